// Benchmark client, run directly and under `mirrord exec` with the same arguments.
// Modes: `upload HOST PORT MIB` (send MIB, wait for the server's byte count),
// `download HOST PORT MIB`, `rtt HOST PORT N` (N 32-byte echoes on one connection).
import net from 'node:net';

const [mode, host, portText, nText] = process.argv.slice(2);
const port = Number(portText);
const n = Number(nText);
const sock = net.connect({ host, port, noDelay: true });
sock.on('error', (e) => {
  console.error(e.message);
  process.exit(2);
});
const t0 = process.hrtime.bigint();
const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9;

if (mode === 'upload') {
  const chunk = Buffer.alloc(256 * 1024, 7);
  let left = n * 4;
  sock.write(`U${String(n).padStart(8, '0')}`);
  const pump = () => {
    while (left > 0) {
      left--;
      if (!sock.write(chunk)) return sock.once('drain', pump);
    }
  };
  sock.once('connect', pump);
  sock.once('data', () => {
    console.log(JSON.stringify({ mbps: n / elapsed() }));
    sock.destroy();
  });
} else if (mode === 'download') {
  let got = 0;
  sock.write(`D${String(n).padStart(8, '0')}`);
  sock.on('data', (d) => {
    got += d.length;
    if (got >= n * 1024 * 1024) {
      console.log(JSON.stringify({ mbps: n / elapsed() }));
      sock.destroy();
    }
  });
} else {
  const lat = [];
  const msg = Buffer.alloc(32, 1);
  let i = 0;
  let sent;
  sock.write('E00000000');
  const next = () => {
    sent = process.hrtime.bigint();
    sock.write(msg);
  };
  let pending = 0;
  sock.on('data', (d) => {
    pending += d.length;
    while (pending >= 32) {
      pending -= 32;
      lat.push(Number(process.hrtime.bigint() - sent) / 1e6);
      if (++i >= n) {
        lat.sort((a, b) => a - b);
        console.log(JSON.stringify({ p50: lat[Math.floor(n / 2)], p99: lat[Math.floor(n * 0.99)] }));
        sock.destroy();
        return;
      }
      next();
    }
  });
  sock.once('connect', next);
}
