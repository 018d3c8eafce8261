#!/usr/bin/env bash
# Builds the browser package and the demo page into web/dist:
#   pkg/       the npm package: the wasm module, its JavaScript bindings and TypeScript types (wasm-bindgen
#              --target web), package.json and README.md from web/npm/
#   pwlu-web-VERSION.tgz  the package as `npm pack` makes it
#   models/    the bundled models and sample photos found in models/ (scripts/zoo.sh makes them)
#   *.html ... the demo page
# Installs the wasm32 target and wasm-bindgen-cli at the version Cargo.lock pins when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | cut -d' ' -f2)" != "$version" ]; then
  echo "installing wasm-bindgen-cli $version (the version Cargo.lock pins)"
  cargo install wasm-bindgen-cli --version "$version"
fi
if command -v rustup >/dev/null; then
  rustup target add wasm32-unknown-unknown >/dev/null
fi

cargo build --profile wasm-release --target wasm32-unknown-unknown -p pwlu-web
rm -rf web/dist
mkdir -p web/dist/models/photos
wasm-bindgen --target web --out-dir web/dist/pkg \
  target/wasm32-unknown-unknown/wasm-release/pwlu_web.wasm
rm -f web/dist/pkg/.gitignore
crate_version=$(awk -F'"' '/^version = / { print $2; exit }' web/Cargo.toml)
sed "s/\"version\": \"0.0.0\"/\"version\": \"$crate_version\"/" web/npm/package.json > web/dist/pkg/package.json
cp web/npm/README.md web/dist/pkg/
(cd web/dist/pkg && npm pack --silent --pack-destination .. >/dev/null)
cp web/www/* web/dist/

# The bundled models: every one of these that scripts/zoo.sh has exported.
bundled=(digits:"Digits (8x8 handwritten, PWLU)" efficientnet_lite0:"EfficientNet-Lite0 (ImageNet)"
  shufflenet_v2_x1_0:"ShuffleNet v2 (PWLU, random weights; concat, shuffle)")
# Hard links where the file system allows: the models are tens of megabytes.
place() { ln -f "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
entries=()
for item in "${bundled[@]}"; do
  name=${item%%:*}
  title=${item#*:}
  if [ -f "models/$name.safetensors" ]; then
    place "models/$name.safetensors" web/dist/models/
    bytes=$(stat -c %s "models/$name.safetensors")
    entries+=("{\"name\": \"$name\", \"title\": \"$title\", \"file\": \"models/$name.safetensors\", \"bytes\": $bytes}")
  fi
done
photos=()
for photo in models/photos/*; do
  [ -f "$photo" ] || continue
  place "$photo" web/dist/models/photos/
  photos+=("\"models/photos/$(basename "$photo")\"")
done
if [ ${#entries[@]} -eq 0 ]; then
  echo "note: no models in models/; run scripts/zoo.sh to bundle some (the page can still open files)" >&2
fi
join() { local IFS=,; echo "$*"; }
printf '{"models": [%s], "photos": [%s]}\n' "$(join "${entries[@]}")" "$(join "${photos[@]}")" \
  > web/dist/models/index.json

wasm=web/dist/pkg/pwlu_web_bg.wasm
echo "built web/dist: $(stat -c %s "$wasm") bytes of wasm, $(gzip -9 -c "$wasm" | wc -c) gzipped"
