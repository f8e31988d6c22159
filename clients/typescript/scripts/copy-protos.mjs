// Copies the repository's proto/ into the package (the SDK loads the service definition at
// run time), so that a packed or installed SDK carries the protos it was built with.
import { cpSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "proto");
rmSync(target, { recursive: true, force: true });
cpSync(join(here, "..", "..", "..", "proto", "noid", "v1"), join(target, "noid", "v1"), { recursive: true });
