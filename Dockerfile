# syntax=docker/dockerfile:1
# Moon Vault server image: built with cgo (PKCS#11 via dlopen, secp256k1),
# run as the distroless non-root user with glibc for the HSM vendor module.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# GOFIPS140=v1.0.0 links the frozen Go Cryptographic Module v1.0.0 (CMVP
# validated; the toolchain resolves it to v1.0.0-c2097c7c) instead of the
# in-tree one, and makes GODEBUG=fips140=on the binary's default: the
# server runs in FIPS 140-3 mode without a flag. Set fips_mode = true in
# the configuration to refuse to start otherwise, and GODEBUG=fips140=only
# to refuse non-approved algorithms at run time (docs/fips.md).
ENV CGO_ENABLED=1 GOFLAGS=-buildvcs=false GOFIPS140=v1.0.0
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/moonvault ./cmd/moonvault

# distroless/base (not static): glibc and libdl so that the HSM vendor's
# PKCS#11 module (a glibc shared object) can be dlopen()ed.
FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build --chown=0:0 --chmod=0555 /out/moonvault /moonvault
# nonroot:nonroot in distroless; numeric so that runAsNonRoot can check it.
USER 65532:65532
EXPOSE 8200
ENTRYPOINT ["/moonvault"]
CMD ["server", "-config", "/etc/moonvault/config.hcl"]
