#!/usr/bin/env node
import { run } from '../dist/src/cli.js';

// The process exits here and only here, so that run() stays testable in-process.
process.exitCode = await run(process.argv.slice(2));
