/**
 * The DNS server of namespace-level capture: iptables sends every DNS query of the user's container
 * (UDP and TCP port 53, to whatever nameserver its resolv.conf names) here, and A/AAAA questions are
 * answered with the agent's `dns.lookup`, so names resolve as they do in the target (its hosts
 * file, nameservers, search domains). Other question types get an empty answer: the agent resolves
 * addresses only. Replies leave from the socket the query was redirected to, so conntrack gives
 * them the source address the client asked.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { ApDnsAddress, ApMethods } from '../../common/protocol/agent/index.js';
import type { Logger } from '../../common/log.js';

export interface DnsAgent {
  request(method: 'dns.lookup', params: ApMethods['dns.lookup']['params']): Promise<ApMethods['dns.lookup']['result']>;
}

const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 } as const;
/** Short: the target's answers may change, and clients cache what we say. */
const TTL = 5;

export interface DnsResponder {
  udpPort: number;
  tcpPort: number;
  close(): void;
}

/** Answers one query packet; never throws (a malformed query gets no answer, as from any server). */
export async function answer(agent: DnsAgent, query: Buffer, log: Logger): Promise<Buffer | undefined> {
  let q: dnsPacket.DecodedPacket;
  try {
    q = dnsPacket.decode(query);
  } catch {
    return undefined;
  }
  const question = q.questions?.[0];
  const reply = (rcode: number, answers: dnsPacket.Answer[] = []) =>
    dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
      questions: q.questions,
      answers,
    });
  if (!question || question.class !== 'IN') return reply(RCODE.NOTIMP);
  if (question.type !== 'A' && question.type !== 'AAAA') return reply(RCODE.NOERROR);
  const family = question.type === 'A' ? 4 : 6;
  let addresses: ApDnsAddress[];
  try {
    addresses = (await agent.request('dns.lookup', { name: question.name, family })).addresses;
  } catch (err) {
    const code = (err as { code?: string }).code;
    log.debug(`dns ${question.name} ${question.type}: ${code ?? (err as Error).message}`);
    if (code === 'ENOTFOUND') return reply(RCODE.NXDOMAIN);
    if (code === 'ENODATA') return reply(RCODE.NOERROR);
    return reply(RCODE.SERVFAIL);
  }
  log.debug(`dns ${question.name} ${question.type}: ${addresses.map((a) => a.address).join(', ')}`);
  return reply(
    RCODE.NOERROR,
    addresses
      .filter((a) => a.family === family)
      .map((a) => ({ type: question.type, class: 'IN', name: question.name, ttl: TTL, data: a.address }) as dnsPacket.Answer),
  );
}

/** UDP and TCP on loopback ports (the iptables REDIRECT targets for port 53). */
export async function startDnsResponder(agent: DnsAgent, log: Logger): Promise<DnsResponder> {
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    void answer(agent, msg, log).then((out) => {
      if (out) udp.send(out, rinfo.port, rinfo.address);
    });
  });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(0, '127.0.0.1', () => resolve());
  });
  const port = udp.address().port;
  // TCP: two-byte length before each message (RFC 1035 4.2.2); queries answered in order.
  const tcp = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let chain = Promise.resolve();
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        chain = chain.then(async () => {
          const out = await answer(agent, Buffer.from(msg), log);
          if (!out) return void sock.destroy();
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          sock.write(Buffer.concat([len, out]));
        });
      }
    });
  });
  const listen = (p: number) =>
    new Promise<number>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(p, '127.0.0.1', () => resolve((tcp.address() as net.AddressInfo).port));
    });
  // The same number as UDP when it is free, which it almost always is.
  const tcpPort = await listen(port).catch(() => listen(0));
  return {
    udpPort: port,
    tcpPort,
    close() {
      udp.close();
      tcp.close();
    },
  };
}
