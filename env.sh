# Source this to build by hand with the project's libtorch: `. ./env.sh && cargo build`.
export LIBTORCH_USE_PYTORCH=1
export PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.venv/bin:$PATH"
