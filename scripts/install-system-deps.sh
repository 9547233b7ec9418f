#!/usr/bin/env bash
# Debian/Ubuntu packages the Python dependencies need at run time:
#   wordnet-base (WordNet 3.0 at /usr/share/wordnet: the zero-shot image-text scorer's
#   vocabulary, perception/wordnet.py); libusb-1.0-0 and libgomp1 (open3d), libgl1 is not needed (opencv-python-headless);
#   cmake, g++ and make build vision_msgs, radar_msgs and tf2_msgs (scripts/install-ros.sh;
#   the ROS 2 wheels themselves bundle their libraries and need nothing more).
# Installs only what is missing; needs root or sudo when something is.
set -euo pipefail
needed=(libusb-1.0-0 libgomp1 cmake g++ make wordnet-base)
missing=()
for pkg in "${needed[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "missing system packages ${missing[*]} and no apt-get: install them by hand" >&2
  exit 1
fi
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "installing system packages: ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
