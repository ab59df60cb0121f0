import { fileURLToPath, URL } from 'node:url'
import tailwindcss from '@tailwindcss/vite'
import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// The dev server runs inside the project's sandbox on its own loopback; CodeFlux reaches it
// and serves it at http://<project-id>.preview.localhost:<port>/ (allowed by default).
export default defineConfig({
  plugins: [react(), tailwindcss()],
  resolve: {
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
  },
  server: {
    host: '127.0.0.1',
    port: 5173,
    strictPort: true,
    // A link to a directory outside the project (`ln -s / root`) must not make the watcher
    // crawl the whole sandbox (it grows until the dev server is killed for memory).
    watch: { followSymlinks: false },
  },
  // The dependency scan starts from the page, not from every HTML file under the project
  // (a crawl that would follow such a link too).
  optimizeDeps: { entries: ['index.html'] },
})
