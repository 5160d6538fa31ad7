// Writes every frame of the shared LP byte vectors as one seed file each: node seeds.mjs VECTORS DIR
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const [vectorsPath, dir] = process.argv.slice(2);
const file = JSON.parse(readFileSync(vectorsPath, 'utf8'));
mkdirSync(dir, { recursive: true });
const hexes = [...file.vectors.map((v) => v.hex), ...file.malformed.map((m) => m.hex), ...file.lengths.map((l) => l.header)];
hexes.forEach((hex, i) => writeFileSync(path.join(dir, `v${String(i).padStart(3, '0')}.bin`), Buffer.from(hex, 'hex')));
// The whole set as one stream, for the stream harness.
writeFileSync(path.join(dir, 'stream.bin'), Buffer.concat(file.vectors.map((v) => Buffer.from(v.hex, 'hex'))));
