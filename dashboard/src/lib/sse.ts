/**
 * A server-sent-events reader over `fetch`, because `EventSource` cannot
 * send the admin token in an `Authorization` header.
 *
 * Invariants: a single line longer than `maxLine` characters ends the
 * stream with an error instead of growing a buffer without bound; events
 * are delivered in order; `abort` stops the reader without a callback.
 */

export interface SseEvent {
	event: string;
	data: string;
	id: string | null;
}

/** Incremental parser for the `text/event-stream` format. */
export class SseParser {
	private buffer = '';
	private data: string[] = [];
	private event = '';
	private id: string | null = null;

	constructor(private readonly maxLine = 1 << 20) {}

	/** Feeds a chunk; returns the events it completed. */
	push(chunk: string): SseEvent[] {
		this.buffer += chunk;
		const out: SseEvent[] = [];
		for (;;) {
			const nl = this.buffer.search(/\r\n|\r|\n/);
			if (nl < 0) break;
			const line = this.buffer.slice(0, nl);
			const width = this.buffer.startsWith('\r\n', nl) ? 2 : 1;
			this.buffer = this.buffer.slice(nl + width);
			const event = this.line(line);
			if (event) out.push(event);
		}
		if (this.buffer.length > this.maxLine) {
			throw new Error('event stream line too long');
		}
		return out;
	}

	private line(line: string): SseEvent | null {
		if (line === '') {
			if (this.data.length === 0) {
				this.event = '';
				return null;
			}
			const event = { event: this.event || 'message', data: this.data.join('\n'), id: this.id };
			this.data = [];
			this.event = '';
			return event;
		}
		if (line.startsWith(':')) return null;
		const colon = line.indexOf(':');
		const field = colon < 0 ? line : line.slice(0, colon);
		let value = colon < 0 ? '' : line.slice(colon + 1);
		if (value.startsWith(' ')) value = value.slice(1);
		if (field === 'data') this.data.push(value);
		else if (field === 'event') this.event = value;
		else if (field === 'id' && !value.includes('\0')) this.id = value;
		return null;
	}
}

/** Reads `response.body` as server-sent events until it ends or `signal` aborts. */
export async function readEvents(
	response: Response,
	onEvent: (event: SseEvent) => void,
	signal: AbortSignal
): Promise<void> {
	if (!response.body) throw new Error('the server sent no event stream');
	const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
	const parser = new SseParser();
	const stop = () => void reader.cancel().catch(() => {});
	signal.addEventListener('abort', stop, { once: true });
	try {
		for (;;) {
			const { value, done } = await reader.read();
			if (done || signal.aborted) return;
			for (const event of parser.push(value)) onEvent(event);
		}
	} finally {
		signal.removeEventListener('abort', stop);
	}
}
