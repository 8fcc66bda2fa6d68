import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The bundle is committed (control_center/static/console) and CI rebuilds it and diffs:
// content-hashed names (the same sources give the same names; the server caches assets
// as immutable), no module-preload polyfill (it would be an inline script under a CSP
// without 'unsafe-inline'), no source maps.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../control_center/static/console",
    emptyOutDir: true,
    sourcemap: false,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 2048,
    rollupOptions: {
      output: {
        entryFileNames: "assets/console-[hash].js",
        chunkFileNames: "assets/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
