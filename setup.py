"""Build script for multimodal_perception: colcon (ament_python) and plain pip alike.

The repository follows the design card's layout (``ros_pkg/``, ``perception/``,
``fusion/``, ``sim/`` at the top level); ``package_dir`` installs them as subpackages of
one importable package, ``multimodal_perception``, so nothing generic such as
``fusion`` lands at the top of site-packages.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "multimodal_perception"

# Top-level folders installed as multimodal_perception.<name>; every package below them
# (a folder with an __init__.py, e.g. perception/training) comes along.
ROOTS = ("ros_pkg", "perception", "fusion", "sim")


def _package_dirs() -> dict[str, str]:
    dirs = {PACKAGE: PACKAGE}
    for sub in find_packages(PACKAGE):  # multimodal_perception/datasets, ...
        dirs[f"{PACKAGE}.{sub}"] = f"{PACKAGE}/{sub.replace('.', '/')}"
    for root in ROOTS:
        dirs[f"{PACKAGE}.{root}"] = root
        for sub in find_packages(root):
            dirs[f"{PACKAGE}.{root}.{sub}"] = f"{root}/{sub.replace('.', '/')}"
    return dirs


def _data_files() -> list[tuple[str, list[str]]]:
    share = f"share/{PACKAGE}"
    files = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (share, ["package.xml"]),
        (f"{share}/launch", glob("launch/*.launch.py")),
        (f"{share}/config", glob("config/*.yaml")),
        (f"{share}/models", glob("models/*.yaml") + glob("models/*.onnx")),
        (f"{share}/bags/urban_crossing_5s", glob("bags/urban_crossing_5s/*")),
    ]
    return [(dest, srcs) for dest, srcs in files if srcs]


setup(
    name=PACKAGE,
    version="0.1.0",
    description="ROS 2 camera/lidar/radar perception with semantic-consistency filtering",
    license="Apache-2.0",
    # constraints.txt pins numpy 2.4 and scipy 1.17 (3.11 at least); its pins have wheels up to
    # 3.13. Tested on 3.11.
    python_requires=">=3.11,<3.14",
    packages=list(_package_dirs()),
    package_dir=_package_dirs(),
    package_data={f"{PACKAGE}.ros_pkg": ["msg/*/*.msg"]},
    data_files=_data_files(),
    install_requires=[
        "numpy>=1.22",
        "scipy>=1.8",
        "numba>=0.59",
        "opencv-python-headless>=4.5",
        "pyyaml>=5.4",
        "rosbags>=0.10",
        "mcap>=1.1",
        "onnxruntime>=1.14",
        "jsonschema>=4.0",
        "matplotlib>=3.5",
        "open3d>=0.17",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "torch": ["torch>=2.1", "onnx>=1.14"],
        "vlm": ["transformers>=4.45", "tokenizers>=0.19"],
        "test": ["pytest>=7", "ruff", "hypothesis>=6.100", "websockets>=12"],
        "ray": ["ray>=2.9"],
        "foxglove": ["foxglove-sdk>=0.30"],
        # rapidocr-onnxruntime 1.4.4 itself (PP-OCRv4 models inside its wheel) is installed
        # with --no-deps by `make venv`: it requires opencv-python, whose cv2 would replace
        # opencv-python-headless's. These are the rest of what it needs.
        "ocr": ["pyclipper>=1.3", "shapely>=2.0", "six>=1.16", "Pillow>=9", "tqdm>=4.60"],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "mmp = multimodal_perception.cli:main",
            "multimodal_perception_node = multimodal_perception.ros_pkg.node:main",
            "multimodal_perception_managed_node = multimodal_perception.ros_pkg.managed_node:main",
        ]
    },
)
