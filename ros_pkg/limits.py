"""Plausibility limits for input messages, in one place, each with its unit and source.

A corrupt or hostile message can declare a 100000 x 100000 image, a billion points,
a radar return at 1e8 m/s or a stamp before 1970. Decoders compare declared sizes
against these caps *before* anything is allocated or decoded and raise
:class:`~multimodal_perception.ros_pkg.errors.SizeLimitError`; values out of a
physically plausible range raise
:class:`~multimodal_perception.ros_pkg.errors.ValueRangeError` (a whole message) or are
removed and counted (single radar returns, single tf transforms).
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class MessageLimits:
    # --- stamps (builtin_interfaces/Time) -------------------------------------------
    # Time.sec is int32 in ROS 2, so a stamp can be negative (before 1970, refused) and
    # 0/0 means "never set" (refused for sensor messages: the tracker needs real time).
    # The largest Time.sec is 2**31 - 1 s (2038-01-19); beyond it a stamp cannot come
    # from a real bag and would not fit the bag writer's uint64 nanosecond log time.
    max_stamp_sec: int = 2**31 - 1  # s since 1970

    # --- images (sensor_msgs/Image, CompressedImage) ----------------------------------
    # Longest side in pixels. Driving-dataset cameras are at most 4K (3840 px); 8K
    # sensors are 7680 px wide: 16384 px is twice that (and JPEG's own limit is 65535).
    max_image_side: int = 16384  # px
    # Decoded bytes of one image, counting what OpenCV allocates while decoding (the
    # native-depth PNG buffer plus the BGR output; a progressive JPEG's 16-bit DCT
    # coefficients plus the output). An 8K 16-bit RGB frame is 7680*4320*6 = 199 MB.
    max_image_bytes: int = 512 * MIB  # bytes
    # Compressed payload: a 4K JPEG at quality 100 is ~10 MB, a lossless 4K 16-bit PNG
    # ~60 MB at worst.
    max_compressed_bytes: int = 64 * MIB  # bytes
    # Segments (APPn, DQT, DHT, COM, ...) walked before a JPEG's frame header (SOFn).
    # Camera JPEGs carry fewer than 20 (libjpeg writes 6-8, EXIF cameras ~12); the cap
    # bounds the header walk however far the frame header is.
    max_jpeg_header_segments: int = 1000  # segments

    # --- point clouds (sensor_msgs/PointCloud2) ---------------------------------------
    # An Ouster OS2-128 at 2048 columns is 262144 points a sweep; an accumulated map
    # tile a few million: 8 million points is ~30x a sweep of the densest lidar.
    max_cloud_points: int = 8_000_000  # points
    max_cloud_bytes: int = 1024 * MIB  # bytes (8e6 points at point_step 128)
    # Fields of one point: drivers publish 3-12 (x y z intensity ring t reflectivity
    # ambient range ...); PCL's largest built-in point type has fewer than 40.
    max_cloud_fields: int = 256  # fields

    # --- radar (radar_msgs/RadarScan, RadarTracks, radar PointCloud2) -------------------
    # Returns per scan: automotive radars report up to ~800 detections a cycle
    # (Continental ARS548: 800; 4D imaging radars a few thousand).
    max_radar_returns: int = 200_000  # returns
    # |radial velocity|: automotive radars' unambiguous Doppler ranges are well under
    # 100 m/s (Continental ARS408: -111..+55 m/s, i.e. -400..+200 km/h); two cars closing
    # at 250 km/h each are 139 m/s apart. A return beyond 150 m/s is not physical here.
    max_radar_radial_velocity_mps: float = 150.0  # m/s
    # Range: long-range automotive radars reach 250-300 m (ARS408: 250 m, ARS548: 301 m,
    # Bosch LRR4: 250 m); 500 m leaves margin for any automotive sensor.
    max_radar_range_m: float = 500.0  # m

    # --- tf (tf2_msgs/TFMessage) --------------------------------------------------------
    # Transforms in one message: a robot's whole tree is tens to hundreds of frames.
    max_transforms: int = 10_000  # transforms


DEFAULT_LIMITS = MessageLimits()
