import type { Route, Script } from './types';

/** The custom routes bound to a script, whichever field the server uses. */
export function routesOf(script: Script): Route[] {
	if (Array.isArray(script.routes)) return script.routes;
	return script.route ? [script.route] : [];
}

/** "POST /exec/hooks/{id}", "/exec/hi" (any method), or `null`. */
export function routeLabel(script: Script): string | null {
	const routes = routesOf(script);
	if (routes.length === 0) return null;
	const first = routes[0] as Route;
	const label = first.method ? `${first.method} ${first.path}` : first.path;
	return routes.length > 1 ? `${label} +${routes.length - 1}` : label;
}

/**
 * A concrete path for a route pattern: `{name}` segments become `name`, a
 * final `{*rest}` becomes `rest`, so the try-it panel starts from something
 * that matches.
 */
export function examplePath(pattern: string): string {
	return pattern.replace(/\{\*?([A-Za-z0-9_]+)\}/g, (_m, name: string) => name);
}
