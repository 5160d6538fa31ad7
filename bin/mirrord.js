#!/usr/bin/env node
// The bundled CLI (scripts/build-cli.mjs, part of `npm run build`): one module and lazy chunks start
// several times faster than dist/src's few hundred files. Both export the same run().
import { run } from '../dist/cli/mirrord.mjs';

// The process exits here and only here, so that run() stays testable in-process.
process.exitCode = await run(process.argv.slice(2));
