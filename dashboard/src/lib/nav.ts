/**
 * Where to go after signing in: only a path on this site. `?next=` comes
 * from the URL, so anything that could leave the site (`//host`, `/\host`,
 * `https:`) falls back to the scripts list.
 */
export function safeNext(next: string | null): string {
	if (!next) return '/';
	const sameSite = next.startsWith('/') && !next.startsWith('//') && !next.includes('\\');
	return sameSite && !next.startsWith('/login') ? next : '/';
}
