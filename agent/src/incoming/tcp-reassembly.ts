/**
 * The client-to-server byte stream of each TCP connection to a port, rebuilt from captured packets
 * (sniff.ts) for passive mirroring. Only connections whose SYN was seen are followed: without it
 * there is no telling where the bytes start. Per connection, bytes come out once and in order:
 * retransmitted and overlapping segments are trimmed to what is new, segments that arrive early
 * wait for the gap before them (up to a limit), FIN ends the stream once every byte before it came,
 * RST ends it at once. A gap that does not fill (the capture dropped a packet the real connection
 * got) ends the copy rather than hand the local program bytes out of order.
 */

export interface TcpSegment {
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  seq: number;
  syn: boolean;
  fin: boolean;
  rst: boolean;
  payload: Buffer;
}

export interface FlowKey {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

/** What becomes of one connection's bytes (one per connection, made when its SYN is seen). */
export interface FlowSink {
  data(chunk: Buffer): void;
  /** The client finished sending (FIN with every byte before it delivered). */
  end(): void;
  /** RST, a gap that never filled, or idleness: the copy ends without its tail. */
  abort(reason: string): void;
}

export interface ReassemblerOptions {
  open(key: FlowKey): FlowSink;
  /** Bytes held beyond a gap before the copy is given up. */
  maxPending?: number;
  /** A connection silent this long is forgotten (its FIN or RST was lost, say). */
  idleMs?: number;
  now?: () => number;
}

interface Flow {
  key: FlowKey;
  sink: FlowSink;
  /** The client's initial sequence number (a SYN with it again is a retransmission). */
  isn: number;
  /** Sequence number of the next byte the sink expects. */
  next: number;
  /** Sequence number of the FIN, once seen. */
  finAt?: number;
  pending: Map<number, Buffer>;
  pendingBytes: number;
  lastSeen: number;
  ended: boolean;
}

/** a - b in 32-bit sequence space, as a signed number. */
const seqDiff = (a: number, b: number) => (a - b) | 0;

export class Reassembler {
  private readonly flows = new Map<string, Flow>();
  private readonly maxPending: number;
  private readonly idleMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: ReassemblerOptions) {
    this.maxPending = opts.maxPending ?? 4 * 1024 * 1024;
    this.idleMs = opts.idleMs ?? 10 * 60_000;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.flows.size;
  }

  push(s: TcpSegment): void {
    const id = `${s.src}|${s.srcPort}|${s.dst}|${s.dstPort}`;
    let flow = this.flows.get(id);
    if (s.syn) {
      // A retransmitted SYN belongs to the flow it opened; another ISN is a new connection on a reused port.
      if (flow && flow.isn === s.seq) return void (flow.lastSeen = this.now());
      if (flow) this.finish(id, flow, 'abort', 'the client port was reused');
      const key = { remoteAddress: s.src, remotePort: s.srcPort, localAddress: s.dst, localPort: s.dstPort };
      flow = { key, sink: this.opts.open(key), isn: s.seq, next: (s.seq + 1) >>> 0, pending: new Map(), pendingBytes: 0, lastSeen: this.now(), ended: false };
      this.flows.set(id, flow);
      if (s.payload.length === 0 && !s.fin) return;
      // Data on a SYN (TCP Fast Open) starts right after it.
      s = { ...s, seq: flow.next, syn: false };
    }
    if (!flow) return;
    flow.lastSeen = this.now();
    if (s.rst) return this.finish(id, flow, 'abort', 'connection reset');
    if (s.fin) {
      const at = (s.seq + s.payload.length) >>> 0;
      if (flow.finAt === undefined) flow.finAt = at;
    }
    if (s.payload.length > 0) this.accept(flow, s.seq, s.payload);
    if (flow.pendingBytes > this.maxPending) return this.finish(id, flow, 'abort', `a gap of lost packets did not fill after ${flow.pendingBytes} bytes`);
    if (flow.finAt !== undefined && seqDiff(flow.next, flow.finAt) >= 0) this.finish(id, flow, 'end');
  }

  private accept(flow: Flow, seq: number, payload: Buffer): void {
    const ahead = seqDiff(seq, flow.next);
    if (ahead > 0) {
      const held = flow.pending.get(seq);
      if (!held || held.length < payload.length) {
        flow.pendingBytes += payload.length - (held?.length ?? 0);
        flow.pending.set(seq, payload);
      }
      return;
    }
    // A retransmission or an overlap: only the bytes past `next` are new.
    if (-ahead >= payload.length) return;
    this.deliver(flow, payload.subarray(-ahead));
    this.drain(flow);
  }

  private deliver(flow: Flow, chunk: Buffer): void {
    flow.next = (flow.next + chunk.length) >>> 0;
    flow.sink.data(chunk);
  }

  /** Segments that waited for the gap before them, now that it filled. */
  private drain(flow: Flow): void {
    for (let progress = true; progress && flow.pending.size > 0; ) {
      progress = false;
      for (const [seq, buf] of flow.pending) {
        const ahead = seqDiff(seq, flow.next);
        if (ahead > 0) continue;
        flow.pending.delete(seq);
        flow.pendingBytes -= buf.length;
        if (-ahead < buf.length) this.deliver(flow, buf.subarray(-ahead));
        progress = true;
      }
    }
  }

  private finish(id: string, flow: Flow, how: 'end' | 'abort', reason = ''): void {
    if (this.flows.get(id) === flow) this.flows.delete(id);
    if (flow.ended) return;
    flow.ended = true;
    if (how === 'end') flow.sink.end();
    else flow.sink.abort(reason);
  }

  /** Forgets connections silent for longer than idleMs (the caller runs this now and then). */
  sweep(): void {
    const now = this.now();
    for (const [id, flow] of this.flows) if (now - flow.lastSeen > this.idleMs) this.finish(id, flow, 'abort', 'idle');
  }

  /** The capture ends: every copy ends without its tail. */
  close(reason: string): void {
    for (const [id, flow] of [...this.flows]) this.finish(id, flow, 'abort', reason);
  }
}
