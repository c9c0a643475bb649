// Type declarations for danmaku.js, the dependency-free client of the
// danmaku WebSocket protocol. Served beside it at /danmaku.d.ts; see
// docs/client.md for a guide and docs/protocol.md for the wire protocol.

/** Reject codes of the protocol. */
export declare const Codes: Readonly<{
  RATE_LIMITED: "rate_limited";
  SLOW_MODE: "slow_mode";
  BANNED: "banned";
  BLOCKED: "blocked";
  TOO_LONG: "too_long";
  INVALID: "invalid";
  UNAUTHORIZED: "unauthorized";
  UNAVAILABLE: "unavailable";
}>;
export type Code = (typeof Codes)[keyof typeof Codes];

/** Application close codes (4000 range). */
export declare const CloseCodes: Readonly<{
  SLOW_CONSUMER: 4000;
  KICKED: 4001;
  IDLE_TIMEOUT: 4002;
  BAD_FRAMES: 4003;
  TOKEN_EXPIRED: 4005;
}>;

/** A chat message as the server sends it (render text and name as text). */
export interface Message {
  /** Per-room sequence number, from 1, strictly increasing. */
  seq: number;
  /** The sender's message id; absent for messages published without one. */
  id?: string;
  uid: string;
  name: string;
  /** The text after moderation (possibly masked with *). */
  text: string;
  /** When the message was accepted, Unix milliseconds. */
  ts: number;
  kind?: "system" | "paid" | "highlight";
  role?: "mod" | "streamer" | "service";
  /** Display colour #rrggbb (highlighted and paid messages). */
  color?: string;
  /** Display mode; absent means scroll. Show unknown values as scroll. */
  mode?: "top" | "bottom";
  /** Display size; absent means normal. Show unknown values at normal size. */
  size?: "small" | "large";
  /** Only for moderators reading history with include_deleted. */
  deleted?: boolean;
}

/** The server accepted a send (seq) or holds it for a moderator (held). */
export interface AckFrame {
  op: "ack";
  id: string;
  room: string;
  seq?: number;
  held?: boolean;
}

/** The server refused a send. */
export interface RejectFrame {
  op: "reject";
  id: string;
  room: string;
  code: Code;
  retry_after_ms?: number;
  /** A short machine-oriented detail, e.g. the moderation rule. */
  message?: string;
}

export interface ErrorFrame {
  op: "error";
  code: string;
  message?: string;
}

export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "kicked" | "closed";

/** Where a delivered message came from. */
export type MessageSource = "history" | "resume" | "live";

export interface DanmakuEvents {
  /** Every message once, in seq order per room. */
  message: (room: string, msg: Message, source: MessageSource) => void;
  /** After a join or resume was answered. */
  history: (room: string, msgs: Message[], complete: boolean) => void;
  joined: (room: string, seq: number, online: number) => void;
  /** Messages retracted by a moderator. */
  delete: (room: string, seqs: number[]) => void;
  /** Every recent message of uid retracted (a ban or timeout). */
  purge: (room: string, uid: string, until: number) => void;
  online: (room: string, count: number) => void;
  /**
   * A system line for the room (e.g. "slow mode is on"), or for every room;
   * uid is set when it is addressed to this user alone (room may then be "").
   */
  notice: (room: string, text: string, uid: string) => void;
  /** The client stops; it does not reconnect. */
  kicked: (reason: string) => void;
  /** The server drains; the client moves to another gateway. */
  reconnect: (afterMs: number) => void;
  /** The token expired (close 4005); the client reconnects anonymously. */
  tokenexpired: () => void;
  /**
   * A held send (resolved with {held: true}) was decided by a moderator:
   * an ack with its seq (approved) or a reject (rejected). It reaches the
   * connection that sent the message only.
   */
  verdict: (room: string, id: string, frame: AckFrame | RejectFrame) => void;
  error: (frame: ErrorFrame) => void;
  close: (info: { code: number; reason: string }) => void;
  state: (state: ClientState, info: { delayMs?: number }) => void;
}

export interface DanmakuClientOptions {
  /** ws://host:port/ws or wss://…, without a query. */
  url: string;
  /** A JWT; empty or absent: anonymous (watch only). */
  token?: string;
  /** Reconnect backoff bounds (full jitter). Defaults 250 and 10000. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Wait this long for an answer before sending again with the same id. Default 3000. */
  sendTimeoutMs?: number;
  /** Give up on a send after this long. Default 30000. */
  sendDeadlineMs?: number;
  /** Default 20000. */
  pingIntervalMs?: number;
  /** Reconnect when nothing arrived for this long. Default 50000. */
  deadAfterMs?: number;
  /** WebSocket constructor; default globalThis.WebSocket (pass "ws" in Node). */
  WebSocket?: new (url: string) => WebSocket;
}

export interface SendOptions {
  /** The message id (1-64 printable ASCII); default a random one. */
  id?: string;
  signal?: AbortSignal;
  /** Overrides sendDeadlineMs for this send. */
  deadlineMs?: number;
  /**
   * Marks every attempt as a re-send of an id sent before (its answer was
   * lost); attempts after the first are always marked ("retry": true).
   */
  retry?: boolean;
  /** Display mode; default "scroll". The room's mode_policy says who may use top and bottom. */
  mode?: "scroll" | "top" | "bottom";
  /** Display size; default "normal". The room's size_policy says who may use small and large. */
  size?: "small" | "normal" | "large";
}

/** How send() fails when no answer can come. */
export declare class SendError extends Error {
  constructor(reason: SendError["reason"], message?: string);
  readonly name: "SendError";
  readonly reason: "closed" | "kicked" | "timeout" | "aborted";
}

export declare class DanmakuClient {
  constructor(opts: DanmakuClientOptions);
  readonly url: string;
  token: string;
  state: ClientState;
  kickedReason: string;
  /** Subscribes fn; returns a function that unsubscribes it. */
  on<K extends keyof DanmakuEvents>(type: K, fn: DanmakuEvents[K]): () => void;
  /** Opens the connection (idempotent). */
  connect(): void;
  /** Joins room; resolves when its history arrived. resume > 0 asks for every message after that seq. */
  join(room: string, resume?: number): Promise<void>;
  leave(room: string): void;
  rooms(): string[];
  /** The highest seq delivered for room (0 if none). */
  lastSeq(room: string): number;
  /** Changes the identity: reconnects and resumes every room. */
  setToken(token: string): void;
  /**
   * Sends text to room and resolves with the server's verdict, retrying
   * with the same id; an "unavailable" reject is retried, others resolve.
   */
  send(room: string, text: string, opts?: SendOptions): Promise<AckFrame | RejectFrame>;
  sendID(room: string, id: string, text: string, opts?: SendOptions): Promise<AckFrame | RejectFrame>;
  /** Closes for good; pending sends fail with SendError("closed"). */
  close(): void;
}

/** Whether room matches [A-Za-z0-9_-]{1,64}. */
export declare function validRoom(room: unknown): room is string;
/** A random message id (24 hex characters). */
export declare function newID(): string;
/** A full-jitter exponential delay in ms for attempt (0-based). */
export declare function backoff(lo: number, hi: number, attempt: number, rand?: () => number): number;
/**
 * The WebSocket URL of the gateway announced by GET /api/config, for a page
 * at location (or the URL of the danmaku server when the page is elsewhere).
 */
export declare function wsURL(
  location: { protocol: string; hostname: string; port: string },
  cfg?: { ws_port?: number; ws_path?: string },
): string;
