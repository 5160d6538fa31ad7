import Docker from 'dockerode';
import { ExitCode, MirrordError, errnoCode } from '../../../common/errors.js';

/** Where the engine is, for messages: DOCKER_HOST or the default socket. */
export function engineAddress(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_HOST || 'unix:///var/run/docker.sock';
}

export function isLocalEngine(env: NodeJS.ProcessEnv = process.env): boolean {
  const h = env.DOCKER_HOST;
  return !h || h.startsWith('unix://');
}

/** dockerode honours DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH itself. */
export function createDocker(): Docker {
  return new Docker();
}

/** Fails fast with one actionable line when the engine cannot be used. */
export async function checkEngine(docker: Docker, timeoutMs = 5000): Promise<void> {
  const where = engineAddress();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      docker.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
      }),
    ]);
  } catch (err) {
    throw dockerUnreachable(err, where);
  } finally {
    clearTimeout(timer);
  }
}

export function dockerUnreachable(err: unknown, where = engineAddress()): MirrordError {
  const code = errnoCode(err);
  if (code === 'EACCES') {
    return new MirrordError(
      `permission denied on the Docker engine at ${where}`,
      ExitCode.Platform,
      'Add your user to the docker group or run with sufficient rights',
      { cause: err },
    );
  }
  const why = code ?? (err as Error)?.message ?? String(err);
  return new MirrordError(
    `cannot reach the Docker engine at ${where} (${why})`,
    ExitCode.Platform,
    'Start Docker (dockerd) or point DOCKER_HOST at a running engine',
    { cause: err },
  );
}
