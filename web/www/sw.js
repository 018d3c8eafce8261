// Offline support: every same-origin GET goes to the network first (so a rebuilt page is never stale) and its
// answer is kept; when the network is gone, the kept copy answers. The page, the engine and each model used once
// keep working offline.
const CACHE = "pwlu-demo";
const SHELL = ["./", "index.html", "app.js", "style.css", "pkg/pwlu_web.js", "pkg/pwlu_web_bg.wasm", "models/index.json"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(request, copy)));
        }
        return response;
      })
      .catch(async () => (await caches.match(request, { ignoreSearch: true })) ?? Response.error()),
  );
});
