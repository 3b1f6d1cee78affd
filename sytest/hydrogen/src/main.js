// Starts Hydrogen's whole client (login page, session, room list, timeline) the way
// hydrogen-web's own web entry point does, from the hydrogen-view-sdk package.
import { Platform, createNavigation, createRouter, RootViewModel, FeatureSet } from "hydrogen-view-sdk";

const assetPaths = {
    downloadSandbox: "assets/download-sandbox.html",
    worker: "assets/main.js",
    olm: { wasm: "olm/olm.wasm", legacyBundle: "olm/olm_legacy.js", wasmBundle: "olm/olm.js" },
    // Hydrogen needs a service worker to hand its auth data to; src/sw.js is a
    // minimal one that answers every message Hydrogen waits on.
    serviceWorker: "sw.js",
};

async function main() {
    const container = document.body;
    const platform = new Platform({ container, assetPaths, configURL: "config.json", options: { development: true } });
    await platform.init();
    const features = await FeatureSet.load(platform.settingsStorage);
    const navigation = createNavigation();
    platform.setNavigation(navigation);
    const urlRouter = createRouter({ navigation, history: platform.history });
    urlRouter.attach();
    const vm = new RootViewModel({ platform, urlRouter, navigation, features });
    await vm.load();
    platform.createAndMountRootView(vm);
    window.__hydrogenStarted = true;
}

main().catch((e) => {
    window.__hydrogenFatal = String((e && e.stack) || e);
    console.error("hydrogen failed to start", e);
});
