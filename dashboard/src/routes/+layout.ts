// A single-page app: everything renders in the browser, behind the admin
// token that only the browser tab holds.
export const ssr = false;
export const prerender = false;
export const trailingSlash = 'never';
