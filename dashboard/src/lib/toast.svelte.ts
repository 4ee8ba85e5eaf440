/** Short-lived messages in the corner ("Saved as version 4"). */

export interface Toast {
	id: number;
	text: string;
	tone: 'ok' | 'err' | 'info';
}

class Toasts {
	items = $state<Toast[]>([]);
	private next = 1;

	show(text: string, tone: Toast['tone'] = 'info', ms = 3500) {
		const id = this.next++;
		this.items.push({ id, text, tone });
		setTimeout(() => this.dismiss(id), ms);
	}

	dismiss(id: number) {
		this.items = this.items.filter((t) => t.id !== id);
	}
}

export const toasts = new Toasts();
