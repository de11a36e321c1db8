#!/usr/bin/env bash
# Builds the container image from the Dockerfile, unchanged, and checks the
# running container the way the README uses it: `make test-image`.
#
# It needs root and takes minutes, so it is not part of `make test`. It uses
# podman (installed from Debian when no engine is present) with runc, which
# works on cgroup v1, v2 and hybrid hosts alike. When the Dockerfile's base
# images cannot be pulled (no registry reachable), it makes them from Debian's
# archive and tags them with the FROM names:
#   debian:bookworm-slim   debootstrap --variant=minbase bookworm
#   golang:1.26-bookworm   that image plus make, ca-certificates and the Go
#                          toolchain GO_IMAGE_VERSION from the Go module proxy
#                          (checked against the checksum database by `go mod
#                          download`), laid out as the official image (GOROOT
#                          /usr/local/go, GOPATH /go, GOTOOLCHAIN=local)
# GO_IMAGE_VERSION defaults to the first 1.26 release, the oldest image the
# FROM line can give, so the build shows go.mod asks for nothing newer.
#
# A host whose egress goes through an intercepting proxy trusts extra CAs
# (/usr/local/share/ca-certificates). The build stages' RUN steps get the
# host's CA bundle and a pip.conf naming it as read-only volumes; the final
# stage is built without them, and a check below shows the image holds neither.
#
# Every request goes to 127.0.0.1: the container's port is published there only.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-pyexec:test}
GO_IMAGE_VERSION=${GO_IMAGE_VERSION:-1.26.0}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_PORT=${HOST_PORT:-18080}
MEMORY_MB=256
WORK=$(mktemp -d /tmp/pyexec-test-image.XXXXXX)
CONTAINER=pyexec-test-image-$$
PODMAN=(podman --runtime runc)
# podman asks for open-files and process limits above what a host with low
# hard limits lets its container monitor have (runc: "error setting rlimit"):
# containers get the host's open-files limit, and a process limit within the
# 32768 that podman 4.3 gives its monitor.
nproc=$(ulimit -Hu); [[ $nproc != unlimited && $nproc -lt 32768 ]] || nproc=32768
RUN_FLAGS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")

started=$SECONDS
passed=0
failed=0
summary=()

log() { printf '>> %s\n' "$*"; }
check() { # check NAME ok|fail [DETAIL]: records and prints one outcome
	local name=$1 ok=$2 detail=${3:-}
	if [[ $ok == ok ]]; then
		passed=$((passed + 1)); summary+=("PASS  $name${detail:+  ($detail)}")
	else
		failed=$((failed + 1)); summary+=("FAIL  $name${detail:+  ($detail)}")
	fi
	printf '%s\n' "${summary[-1]}"
}
cleanup() {
	"${PODMAN[@]}" rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || { echo "test-image needs root (podman must create privileged containers)" >&2; exit 2; }

apt_install() {
	[[ -n ${apt_updated:-} ]] || { apt-get update -qq; apt_updated=1; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. The engine.
if ! command -v podman >/dev/null; then
	log "installing podman and runc from Debian"
	apt_install podman runc
fi
command -v runc >/dev/null || apt_install runc
log "$(podman --version), runtime $(runc --version | head -1)"

# 2. The base images: pulled if a registry answers, made from Debian's archive otherwise.
pull() { timeout 20 "${PODMAN[@]}" pull -q "docker.io/library/$1" >/dev/null 2>&1 && "${PODMAN[@]}" tag "docker.io/library/$1" "$1"; }
have() { "${PODMAN[@]}" image exists "$1"; }

rootfs=""
make_rootfs() {
	[[ -z $rootfs ]] || return 0
	command -v debootstrap >/dev/null || apt_install debootstrap
	rootfs=$WORK/rootfs
	log "debootstrap bookworm from $DEBIAN_MIRROR"
	debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
		|| { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
	# The official image's sources: the release, its updates and security.
	rm -f "$rootfs/etc/apt/sources.list"
	cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
}

import_rootfs() { # import_rootfs DIR TAG [--change ...]
	local dir=$1 tag=$2; shift 2
	tar --numeric-owner -C "$dir" -c . | "${PODMAN[@]}" import "$@" - "$tag" >/dev/null 2>&1
}

if have debian:bookworm-slim || pull debian:bookworm-slim; then
	log "debian:bookworm-slim: present"
else
	make_rootfs
	import_rootfs "$rootfs" debian:bookworm-slim --change 'CMD ["bash"]'
	log "debian:bookworm-slim: made from Debian's archive"
fi

if have golang:1.26-bookworm || pull golang:1.26-bookworm; then
	log "golang:1.26-bookworm: present"
else
	log "Go $GO_IMAGE_VERSION from the Go module proxy"
	gotc=$(cd "$WORK" && GOFLAGS= GOTOOLCHAIN=local go mod download -json "golang.org/toolchain@v0.0.1-go$GO_IMAGE_VERSION.linux-amd64" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
	ctx=$WORK/golang
	mkdir -p "$ctx"
	cp -a "$gotc" "$ctx/go"
	# The module cache keeps files read-only and without execute bits; the go
	# command restores them for the toolchains it switches to, and so does this.
	chmod -R u+w,a+rX "$ctx/go"
	chmod a+x "$ctx/go/bin/"* "$ctx/go/pkg/tool/"*/*
	# What the Dockerfile's build stage uses from buildpack-deps: make and the CAs.
	cat >"$ctx/Containerfile" <<EOF
FROM debian:bookworm-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
ENV GOLANG_VERSION=$GO_IMAGE_VERSION GOTOOLCHAIN=local GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /go/src /go/bin
WORKDIR /go
EOF
	"${PODMAN[@]}" build -q --network host -t golang:1.26-bookworm "$ctx" >"$WORK/golang.log" 2>&1 \
		|| { tail -20 "$WORK/golang.log" >&2; exit 1; }
	rm -rf "$ctx"
	"${PODMAN[@]}" run "${RUN_FLAGS[@]}" --rm golang:1.26-bookworm go version >/dev/null \
		|| { "${PODMAN[@]}" rmi golang:1.26-bookworm >/dev/null; echo "the Go image made here cannot run go" >&2; exit 1; }
	log "golang:1.26-bookworm: made from Debian's archive and Go $GO_IMAGE_VERSION"
fi

# 3. The image, from the Dockerfile as it is. The two build stages fetch from
# the Go module proxy and PyPI, so their RUN steps get the host's CA bundle as
# a file of its own in /etc/ssl/certs, where Go reads every file
# (ca-certificates.crt itself is rewritten when a stage installs
# ca-certificates, so it cannot be a mount), and a pip.conf naming it, since
# pip otherwise trusts only its own bundle. A RUN step keeps the mount points
# of such volumes as empty files in its layer, so the final stage, which
# fetches nothing over TLS, is built in a second pass without them, from the
# build stages' cached layers.
ca_mount=/etc/ssl/certs/pyexec-build-ca.crt
printf '[global]\ncert = %s\n' "$ca_mount" >"$WORK/pip.conf"
build_volumes=()
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
	build_volumes=(-v "/etc/ssl/certs/ca-certificates.crt:$ca_mount:ro" -v "$WORK/pip.conf:/etc/pip.conf:ro")
fi
log "building $IMAGE"
build_start=$SECONDS
built=ok
for target in build venv; do
	"${PODMAN[@]}" build --layers --network host "${build_volumes[@]}" --target "$target" -t "$IMAGE-$target" -f Dockerfile . \
		>>"$WORK/build.log" 2>&1 || { built=fail; break; }
done
if [[ $built == ok ]]; then
	"${PODMAN[@]}" build --layers --network host -t "$IMAGE" -f Dockerfile . >>"$WORK/build.log" 2>&1 || built=fail
fi
"${PODMAN[@]}" untag "$IMAGE-build" >/dev/null 2>&1 || true; "${PODMAN[@]}" untag "$IMAGE-venv" >/dev/null 2>&1 || true
if [[ $built == ok ]]; then
	check "image builds from the Dockerfile" ok "$((SECONDS - build_start)) s"
else
	tail -40 "$WORK/build.log" >&2
	check "image builds from the Dockerfile" fail
	exit 1
fi
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
log "image size $((size / 1000000)) MB"

# The host's extra CAs must not have reached the image.
leaked=""
for crt in /usr/local/share/ca-certificates/*.crt; do
	[[ -f $crt ]] || continue
	line=$(sed -n 2p "$crt")
	if "${PODMAN[@]}" run "${RUN_FLAGS[@]}" --rm --entrypoint grep "$IMAGE" -rqsF -- "$line" /etc /usr/local /opt; then leaked+=" $(basename "$crt")"; fi
done
for f in /etc/pip.conf "$ca_mount"; do
	"${PODMAN[@]}" run "${RUN_FLAGS[@]}" --rm --entrypoint test "$IMAGE" ! -e "$f" || leaked+=" $f"
done
[[ -z $leaked ]] && check "the build's CAs and pip.conf are not in the image" ok \
	|| check "the build's CAs and pip.conf are not in the image" fail "found:$leaked"

# 4. The container, as the README runs it, on 127.0.0.1 only.
log "starting the container on 127.0.0.1:$HOST_PORT"
"${PODMAN[@]}" run "${RUN_FLAGS[@]}" -d --name "$CONTAINER" --privileged -p "127.0.0.1:$HOST_PORT:8080" \
	-e PYEXEC_POOL_SIZE=2 -e PYEXEC_MEMORY_MB=$MEMORY_MB "$IMAGE" >/dev/null
url=http://127.0.0.1:$HOST_PORT
t0=$SECONDS
healthy=""
for _ in $(seq 1 120); do # at most 60 s
	if curl -fsS -m 2 "$url/health" >"$WORK/health.json" 2>/dev/null; then healthy=1; break; fi
	[[ $("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$CONTAINER") == true ]] || break
	sleep 0.5
done
if [[ -n $healthy ]]; then
	check "/health answers 200" ok "after $((SECONDS - t0)) s: $(head -c 300 "$WORK/health.json")"
else
	check "/health answers 200" fail "within 60 s"
	"${PODMAN[@]}" logs "$CONTAINER" 2>&1 | tail -30 >&2
	exit 1
fi

execute() { # execute JSON-BODY -> the answer on stdout
	curl -sS -m 30 -X POST "$url/execute" -H 'Content-Type: application/json' -d "$1"
}
expect() { # expect NAME BODY PYTHON-CONDITION-ON-a
	local name=$1 body=$2 cond=$3 answer
	answer=$(execute "$body" || true)
	if python3 -c "import json, sys; a = json.loads(sys.argv[1]); sys.exit(0 if ($cond) else 1)" "$answer" 2>/dev/null; then
		check "$name" ok "$(head -c 160 <<<"$answer")"
	else
		check "$name" fail "$(head -c 400 <<<"$answer")"
	fi
}

expect "README example" \
	'{"script": "def main():\n    print(\"hello from sandbox\")\n    return {\"message\": \"success\"}"}' \
	'a["result"] == {"message": "success"} and a["stdout"] == "hello from sandbox\n" and a["error"] is None'
expect "pandas script" \
	'{"script": "import pandas as pd\ndef main():\n    df = pd.DataFrame({\"a\": [1, 2, 3], \"b\": [4, 5, 6]})\n    return df.sum().to_dict()"}' \
	'a["result"] == {"a": 6, "b": 15} and a["error"] is None'
expect "timeout" \
	'{"script": "def main():\n    while True:\n        pass", "timeout": 1}' \
	'a["error"]["type"] == "timeout"'
expect "memory limit (${MEMORY_MB} MB)" \
	'{"script": "def main():\n    x = []\n    while True:\n        x.append(b\"y\" * (1 << 20))", "timeout": 20}' \
	'a["error"]["type"] == "memory_limit"'

# 5. SIGTERM: the service drains and exits on its own, well within Cloud Run's 10 s.
t0=$(date +%s.%N)
"${PODMAN[@]}" kill --signal TERM "$CONTAINER" >/dev/null
if code=$(timeout 10 "${PODMAN[@]}" wait "$CONTAINER"); then
	took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
	[[ $code == 0 ]] && check "SIGTERM stops it within 10 s" ok "exit 0 after $took s" \
		|| check "SIGTERM stops it within 10 s" fail "exit $code after $took s"
else
	check "SIGTERM stops it within 10 s" fail "still running after 10 s"
fi
"${PODMAN[@]}" logs "$CONTAINER" >"$WORK/container.log" 2>&1 || true

echo
echo "== test-image summary: $IMAGE, $((size / 1000000)) MB, go base $("${PODMAN[@]}" run "${RUN_FLAGS[@]}" --rm --entrypoint go golang:1.26-bookworm version 2>/dev/null || echo '?'), $((SECONDS - started)) s =="
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
