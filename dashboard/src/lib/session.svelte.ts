/**
 * The admin token for this browser tab.
 *
 * It lives in `sessionStorage` only: it survives reloads of the tab, is gone
 * when the tab closes, and is never written to a cookie or to the URL, so it
 * is sent only where the API client puts it.
 */

const KEY = 'picloud.admin-token';

class Session {
	/** The token in force, or `null` when signed out. */
	token = $state<string | null>(null);
	/** Why the user was sent to the sign-in page, shown there once. */
	notice = $state<string | null>(null);

	constructor() {
		if (typeof sessionStorage !== 'undefined') {
			this.token = sessionStorage.getItem(KEY);
		}
	}

	signIn(token: string) {
		this.token = token;
		this.notice = null;
		sessionStorage.setItem(KEY, token);
	}

	signOut(notice: string | null = null) {
		this.token = null;
		this.notice = notice;
		sessionStorage.removeItem(KEY);
	}
}

export const session = new Session();
