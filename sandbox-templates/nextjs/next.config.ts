import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // previews are opened as http://<project-id>.preview.localhost:<port>/
  allowedDevOrigins: ["*.preview.localhost"],
  devIndicators: false,
};

export default nextConfig;
