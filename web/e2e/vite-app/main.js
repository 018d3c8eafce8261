// The smallest app a web developer writes with the npm package: import it, load a model, classify a photo.
// package.test.mjs builds it with Vite from the packed tarball and opens it in headless Chromium.
import init, { Model } from "pwlu-web";

try {
  await init();
  const backend = new URLSearchParams(location.search).get("backend") ?? "auto";
  const model = await Model.fromUrl("efficientnet_lite0.safetensors", { backend });
  const photo = await createImageBitmap(await (await fetch("coffee.png")).blob());
  const top = await model.classify(photo, 5);
  window.appResult = { top, backend: model.info.backend, reason: model.info.reason };
  document.getElementById("result").textContent = `${top[0].label} on ${model.info.backend}`;
} catch (error) {
  window.appResult = { error: `${error.kind ?? error.name}: ${error.message}` };
}
