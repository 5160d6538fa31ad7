// Benchmark server (runs in a neighbour container): the first 9 bytes choose the mode.
import net from 'node:net';

net
  .createServer({ noDelay: true }, (s) => {
    let head = Buffer.alloc(0);
    let mode;
    let want = 0;
    let got = 0;
    s.on('data', (d) => {
      if (!mode) {
        head = Buffer.concat([head, d]);
        if (head.length < 9) return;
        mode = String.fromCharCode(head[0]);
        want = Number(head.subarray(1, 9).toString()) * 1024 * 1024;
        d = head.subarray(9);
        if (mode === 'D') {
          const chunk = Buffer.alloc(256 * 1024, 9);
          let left = want / chunk.length;
          const pump = () => {
            while (left > 0) {
              left--;
              if (!s.write(chunk)) return s.once('drain', pump);
            }
          };
          pump();
        }
      }
      if (mode === 'U') {
        got += d.length;
        if (got >= want) s.write('ok');
      } else if (mode === 'E' && d.length) s.write(d);
    });
    s.on('error', () => undefined);
  })
  .listen(7000, '0.0.0.0');
