import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateConfig } from '../../src/config/load.js';
import { daemonSessionSettings } from '../../src/devcontainer/daemon.js';
import { DEFAULT_SKIP } from '../../src/devcontainer/options.js';
import { sessionSettings } from '../../src/session/from-config.js';
import { upSessionSettings } from '../../src/up/session-settings.js';

/**
 * One way to build a session's settings: `mirrord up` (every kind of service) and the devcontainer
 * daemon take the shared sessionSettings() of the config, so the keys exec honours reach them too.
 */

const config = () =>
  validateConfig({
    target: 'docker/web',
    key: 'team-a',
    use_proxy: false,
    skip_processes: 'bash;make',
    kubeconfig: '/kube/config',
    kube_context: 'dev',
    accept_invalid_certificates: true,
    agent: { labels: { team: 'a' }, jaq_time_limit: 250 },
    internal_proxy: { start_idle_timeout: 60, idle_timeout: 5, socket_timeout: 600, ping_interval: 2, log_level: 'debug', json_log: true },
    external_proxy: { start_idle_timeout: 45, idle_timeout: 7, log_level: 'info' },
    feature: { network: { incoming: { mode: 'steal' } } },
  });

describe('session settings of mirrord up and the devcontainer daemon', () => {
  it('up: the shared settings, internal_proxy / external_proxy / key / kube included, with its labels added', () => {
    const exec = sessionSettings(config());
    const up = upSessionSettings(config(), { 'dev.mirrord.up': 'team-a' });
    assert.deepEqual(up.proxies, exec.proxies);
    assert.equal(up.proxies?.internal?.idle_timeout, 5);
    assert.equal(up.proxies?.internal?.socket_timeout, 600);
    assert.equal(up.proxies?.external?.idle_timeout, 7);
    assert.equal(up.key, 'team-a');
    assert.deepEqual(up.kube, { kubeconfig: '/kube/config', context: 'dev', acceptInvalidCertificates: true });
    assert.deepEqual(up.skipProcesses, ['bash', 'make']);
    assert.equal(up.features.incoming.mode, 'steal');
    assert.equal(up.agent.jaq_time_limit, 250);
    assert.deepEqual(up.agent.labels, { team: 'a', 'dev.mirrord.up': 'team-a' });
    // The config's own labels are not changed for the next service.
    assert.deepEqual(exec.agent.labels, { team: 'a' });
  });

  it('devcontainer: the shared settings, its own programs and --skip added to skip_processes', () => {
    const d = daemonSessionSettings(config(), { skip: 'node;;' });
    const exec = sessionSettings(config());
    assert.deepEqual(d.proxies, exec.proxies);
    assert.equal(d.proxies?.internal?.ping_interval, 2);
    assert.equal(d.key, 'team-a');
    assert.deepEqual(d.kube, exec.kube);
    assert.deepEqual(d.agent, exec.agent);
    assert.deepEqual(d.skipProcesses, [...DEFAULT_SKIP, 'bash', 'make', 'node']);
  });

  it('use_proxy: false removes the proxy variables for up and the daemon alike', () => {
    for (const build of [() => upSessionSettings(config(), {}), () => daemonSessionSettings(config(), {})]) {
      process.env.HTTP_PROXY = 'http://proxy:3128';
      process.env.https_proxy = 'http://proxy:3128';
      build();
      assert.equal(process.env.HTTP_PROXY, undefined);
      assert.equal(process.env.https_proxy, undefined);
    }
  });
});
