# syntax=docker/dockerfile:1
# Moon Vault server image: built with cgo (PKCS#11 via dlopen, secp256k1),
# run as the distroless non-root user with glibc for the HSM vendor module.

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=1 GOFLAGS=-buildvcs=false
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
