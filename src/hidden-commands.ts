/**
 * The names of the CLI's hidden commands, which detached helpers of a session run as (src/cli.ts
 * registers them). They live here, apart from the code that spawns those helpers, so that the CLI
 * can register every command without loading that code at start (bench/warm-start.ts).
 */
/** The compose watchdog (src/up/watchdog.ts), spawned by src/up/compose-run.ts. */
export const UP_WATCHDOG_COMMAND = '__up-watchdog';
/** The copy_target watchdog (src/copy-target/watchdog.ts), spawned by src/copy-target/session.ts. */
export const COPY_WATCHDOG_COMMAND = '__copy-target-watchdog';
