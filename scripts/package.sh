#!/usr/bin/env bash
# Builds the Debian package and verifies it without installing anything on this machine:
#
#   bash scripts/package.sh            package the dev-profile binary the tests built (CI: checks the packaging)
#   bash scripts/package.sh --release  build and package the release binary (for distribution; ~30 min cold)
#
# Checks: the file list (binary, conffile, unit, docs), conffiles, the maintainer scripts parse, the packaged
# binary accepts the packaged configuration, and the unit passes `systemd-analyze verify` in a throwaway root that
# holds the package's files (and fails it when its ExecStart is missing, so the check itself is tested).
# Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ccmart-target}"
CARGO_DEB_VERSION=3.8.0

fail() { echo "package.sh: $*" >&2; exit 1; }

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "package.sh: installing cargo-deb $CARGO_DEB_VERSION (about a minute)"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi
for tool in dpkg-deb systemd-analyze; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install -y dpkg systemd)"
done

work=$(mktemp -d /tmp/ccmart-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
deb="$work/ccmart.deb"
if [ "${1:-}" = "--release" ]; then
    cargo deb --output "$deb"
else
    cargo build --quiet --bin ccmart
    # cargo-deb warns that dev builds are not for release: this package only checks the packaging.
    cargo deb --no-build --profile dev --fast --output "$deb" 2>&1 | grep -v -e 'dev profile is not supported' \
        -e 'To enable debug symbols' || true
fi
[ -s "$deb" ] || fail "cargo deb wrote no package"

# 1. Contents.
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/ccmart ./etc/ccmart/ccmart.toml ./lib/systemd/system/ccmart.service \
    ./usr/share/doc/ccmart/README.md ./usr/share/doc/ccmart/operations.md; do
    grep -q " $path\$" <<<"$contents" || fail "the package lacks $path; it holds:
$contents"
done
grep -q -- '-rwxr-xr-x .* ./usr/bin/ccmart$' <<<"$contents" || fail "/usr/bin/ccmart is not mode 0755"

# 2. Control: conffile, maintainer scripts.
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/ccmart/ccmart.toml "$work/control/conffiles" || fail "/etc/ccmart/ccmart.toml is not a conffile"
for script in postinst prerm postrm; do
    [ -x "$work/control/$script" ] || fail "maintainer script $script missing or not executable"
    sh -n "$work/control/$script" || fail "maintainer script $script does not parse"
done
grep -q 'adduser --system' "$work/control/postinst" || fail "postinst does not create the ccmart user"
dpkg-deb -f "$deb" Package Version Architecture Depends

# 3. The packaged binary accepts the packaged configuration.
root="$work/root"
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/ccmart" check-config --config "$root/etc/ccmart/ccmart.toml" >/dev/null \
    || fail "the packaged binary refuses the packaged configuration"

# 4. The unit, in a root holding the package's files and the system's targets.
cp -n /lib/systemd/system/*.target "$root/lib/systemd/system/" 2>/dev/null || true
systemd-analyze verify --root="$root" /lib/systemd/system/ccmart.service \
    || fail "systemd-analyze verify rejects ccmart.service"
mv "$root/usr/bin/ccmart" "$root/usr/bin/ccmart.moved"
if systemd-analyze verify --root="$root" /lib/systemd/system/ccmart.service 2>/dev/null; then
    fail "systemd-analyze verify accepted the unit without its binary: the check cannot fail"
fi
mv "$root/usr/bin/ccmart.moved" "$root/usr/bin/ccmart"
for setting in 'ProtectSystem=strict' 'NoNewPrivileges=yes' 'User=ccmart' 'StateDirectory=ccmart'; do
    grep -qx "$setting" "$root/lib/systemd/system/ccmart.service" || fail "the unit lacks $setting"
done

out="$CARGO_TARGET_DIR/debian"
mkdir -p "$out"
name=$(dpkg-deb -f "$deb" Package)_$(dpkg-deb -f "$deb" Version)_$(dpkg-deb -f "$deb" Architecture).deb
cp "$deb" "$out/$name"
echo "package.sh: $out/$name ($(du -h "$deb" | cut -f1)) verified: contents, conffile, maintainer scripts, config, unit"
