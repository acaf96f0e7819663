# Sourced by scripts/setup, scripts/demo and scripts/test: puts a rustup toolchain on PATH when
# the shell that started us did not (sudo's secure_path drops ~/.cargo/bin; a root shell may
# never have sourced ~/.cargo/env). Under sudo it uses the invoking user's toolchain, so a user
# who installed rustup needs nothing more for `sudo scripts/test`.
if ! command -v cargo >/dev/null 2>&1; then
  for home in "${CARGO_HOME:-}" "$HOME/.cargo" \
    "$(getent passwd "${SUDO_USER:-}" 2>/dev/null | cut -d: -f6)/.cargo"; do
    if [ -n "$home" ] && [ -x "$home/bin/cargo" ]; then
      export PATH="$home/bin:$PATH" CARGO_HOME="$home"
      if [ -z "${RUSTUP_HOME:-}" ] && [ -d "$(dirname "$home")/.rustup" ]; then
        export RUSTUP_HOME="$(dirname "$home")/.rustup"
      fi
      break
    fi
  done
fi
