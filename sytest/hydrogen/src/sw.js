// A minimal service worker for Hydrogen: it takes over at once and answers each
// message Hydrogen sends (closeSession, haltRequests, version checks) so the client
// never waits on it. It caches nothing and touches no request.
self.addEventListener("install", (event) => event.waitUntil(self.skipWaiting()));
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("message", (event) => {
    const { type, id } = event.data || {};
    if (id === undefined || !event.source) return;
    const payload = type === "version" ? { version: "0.3.1", buildHash: "4079461460" } : undefined;
    event.source.postMessage({ replyTo: id, payload });
});
