/** The modifier key people press for shortcuts on this machine. */
export const isMac = typeof navigator !== 'undefined' && /Mac|iPhone|iPad/.test(navigator.userAgent);

/** "⌘S" on a Mac, "Ctrl+S" elsewhere. */
export function shortcut(key: string): string {
	return isMac ? `⌘${key}` : `Ctrl+${key}`;
}
