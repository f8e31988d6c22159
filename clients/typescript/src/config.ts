// Where the SDK finds its server and token: options first, then NOID_URL, NOID_TOKEN and
// NOID_CA_FILE, then the CLI's config file (what `noid auth setup` saved).
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { InvalidArgument, Unauthenticated } from "./errors";

export const DEFAULT_URL = "http://127.0.0.1:7777";

export interface NoidOptions {
  /** http://HOST:PORT or https://HOST:PORT of noid's gRPC API. */
  url?: string;
  token?: string;
  /** For https://: the CA (PEM file) that signed the server's certificate. */
  caFile?: string;
}

export interface Settings {
  target: string;
  tls: boolean;
  token: string;
  ca?: Buffer;
}

function configFile(): string {
  if (process.env.NOID_CONFIG_FILE) return process.env.NOID_CONFIG_FILE;
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(base, "noid", "config.toml");
}

/** The `key = "value"` lines of the CLI's config (all it writes). */
function savedConfig(): Record<string, string> {
  const path = configFile();
  if (!existsSync(path)) return {};
  const saved: Record<string, string> = {};
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const m = line.match(/^\s*([a-z_]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$/);
    if (m) saved[m[1]] = JSON.parse(`"${m[2]}"`);
  }
  return saved;
}

export function resolve(opts: NoidOptions): Settings {
  const saved = savedConfig();
  const url = opts.url || process.env.NOID_URL || saved.url || DEFAULT_URL;
  const token = opts.token || process.env.NOID_TOKEN || saved.token;
  const caFile = opts.caFile || process.env.NOID_CA_FILE || saved.ca_file;
  if (!token) {
    throw new Unauthenticated("no token: pass { token }, set NOID_TOKEN, or run `noid auth setup`", "UNAUTHENTICATED");
  }
  const m = url.match(/^(https?):\/\/(.+?)\/?$/);
  if (!m) throw new InvalidArgument(`the server URL must start with http:// or https://, got "${url}"`, "INVALID_ARGUMENT");
  const tls = m[1] === "https";
  if (!tls && caFile) throw new InvalidArgument(`a CA file was given for ${url}, which is not https://`, "INVALID_ARGUMENT");
  return { target: m[2], tls, token, ca: caFile ? readFileSync(caFile) : undefined };
}
