#!/usr/bin/env bash
# Regenerates the SDK's Go code and the descriptor snapshot from sdk/proto.
# Pinned generators: protoc from Debian 12 (protobuf-compiler 3.21.12),
# protoc-gen-go and protoc-gen-go-grpc at the versions below, installed into
# build/tools. OUT=dir writes into a copy (used by `make check-generate`).
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO=v1.36.12
PROTOC_GEN_GO_GRPC=v1.6.2
tools="$PWD/build/tools"
mkdir -p "$tools"
if [ ! -x "$tools/protoc-gen-go-$PROTOC_GEN_GO" ]; then
  GOFLAGS= GOBIN="$tools" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO"
  mv "$tools/protoc-gen-go" "$tools/protoc-gen-go-$PROTOC_GEN_GO"
fi
if [ ! -x "$tools/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC" ]; then
  GOFLAGS= GOBIN="$tools" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC"
  mv "$tools/protoc-gen-go-grpc" "$tools/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC"
fi
command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler" >&2; exit 1; }
out="${OUT:-$PWD/sdk}"
mkdir -p "$out/proto"
cd sdk
protos=$(find proto -name '*.proto' | sort)
protoc -I . \
  --plugin=protoc-gen-go="$tools/protoc-gen-go-$PROTOC_GEN_GO" \
  --plugin=protoc-gen-go-grpc="$tools/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC" \
  --go_out="$out" --go_opt=module=github.com/berth-cri/berth/sdk \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/berth-cri/berth/sdk \
  $protos
# The wire snapshot the compatibility test compares against (see
# sdk/proto/compat_test.go). Refresh it only when releasing: `make snapshot`.
if [ "${SNAPSHOT:-0}" = 1 ]; then
  protoc -I . --include_imports --descriptor_set_out="$out/proto/descriptors.binpb" $protos
fi
