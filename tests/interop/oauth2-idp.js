#!/usr/bin/env node
// The OAuth2 authorisation server of the interop suite's OAuth2 part:
// oauth2-mock-server (npm) serves the authorize, token and JWKS endpoints
// and signs RS256 JWT access tokens; this script wraps it to behave like a
// real provider toward mailtlsd:
//
//   - device authorisation (RFC 8628), which oauth2-mock-server lacks:
//     POST /device, and the device_code grant at /token;
//   - the person in the browser: GET /authorize approves at once for the
//     user named in the X-Interop-User header (or login_hint) and redirects
//     to the client's loopback redirect_uri with the code; PKCE with S256,
//     state and a loopback redirect_uri are required;
//   - codes are single use, bound to their client and redirect_uri;
//     refresh tokens are the server's own, bound to user and client, rotate
//     on every refresh (the old one is then refused: a client that did not
//     keep the new one fails), and can be revoked;
//   - confidential clients authenticate (HTTP Basic or client_secret in the
//     body); the client-credentials token carries the claims Dovecot's
//     second passdb checks;
//   - the access token names the mailbox in `email` (Dovecot's
//     username_attribute) and carries the scope that was granted;
//   - the RS256 public key is written as PEM where Dovecot's
//     local_validation_key_dict (fs:posix) looks for it:
//     KEYDIR/default/RS256/KID.
//
// A small control API (plain HTTP on another loopback port, JSON) lets the
// test act and observe: approve or deny a device code, change a user's token
// lifetimes (expires_in, the JWT's own exp, tokens already expired for the
// server), turn rotation off, revoke a user's refresh tokens, queue errors
// (e.g. invalid_grant with an AADSTS description), read the events (long
// poll) and every secret issued or received (for the log check).
//
//   node oauth2-idp.js CONFIG.json
//
// CONFIG: host, port, control_port, tls_key, tls_cert, key_dict_dir, kid,
// mail_domain, audience, clients {id: {flows: [...], secret?}}, pidfile.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const crypto = require('crypto');
const path = require('path');
const { OAuth2Server, Events } = require('oauth2-mock-server');

const BODY_MAX = 64 * 1024;
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const DEVICE_EXPIRES = 600;
const DEVICE_INTERVAL = 1;

const conf = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

// ---- state ---------------------------------------------------------------
const events = [];          // {seq, at, type, ...}
let waiters = [];           // long polls of the control API
const devices = new Map();  // device_code -> record
const userCodes = new Map(); // user_code -> device_code
const codes = new Map();    // authorization code -> record
const refresh = new Map();  // refresh token -> record
const settings = new Map(); // user (or "app:CLIENT") -> overrides
const failures = [];        // queued errors: {grant, status, body, count}
const secrets = {
	access_tokens: [], id_tokens: [], refresh_tokens: [], device_codes: [],
	codes: [], code_verifiers: [], client_secrets: [],	// the configured
};
for (const c of Object.values(conf.clients))
	if (c.secret) secrets.client_secrets.push(c.secret);

function record(type, fields) {
	const ev = Object.assign({ seq: events.length + 1, at: Date.now() / 1000,
		type: type }, fields);
	events.push(ev);
	const still = [];
	for (const w of waiters)
		if (!w.offer()) still.push(w);
	waiters = still;
	return ev;
}

function userSettings(key) {
	const d = { access_expires_in: 3600, jwt_lifetime: 3600,
		server_expired: 0, rotate: true };
	return Object.assign(d, settings.get(key) || {});
}

function randomToken(bytes) {
	return crypto.randomBytes(bytes).toString('base64url');
}

function userCode() {
	const abc = 'BCDFGHJKLMNPQRSTVWXZ';
	let s = '';
	for (let i = 0; i < 8; i++) {
		if (i === 4)
			s += '-';
		s += abc[crypto.randomInt(abc.length)];
	}
	return s;
}

// ---- helpers -------------------------------------------------------------
function readBody(req, cb) {
	const chunks = [];
	let len = 0;
	let failed = false;
	req.on('data', (c) => {
		len += c.length;
		if (len > BODY_MAX && !failed) {
			failed = true;
			cb(new Error('body too large'));
			req.destroy();
			return;
		}
		chunks.push(c);
	});
	req.on('end', () => {
		if (!failed)
			cb(null, Buffer.concat(chunks).toString('utf8'));
	});
	req.on('error', (e) => { if (!failed) { failed = true; cb(e); } });
}

function parseForm(text) {
	const out = {};
	for (const [k, v] of new URLSearchParams(text)) {
		if (Object.prototype.hasOwnProperty.call(out, k))
			return null;	// RFC 6749 3.1: no parameter twice
		out[k] = v;
	}
	return out;
}

function sendJson(res, status, body) {
	const text = JSON.stringify(body);
	res.writeHead(status, { 'Content-Type': 'application/json',
		'Cache-Control': 'no-store', 'Content-Length':
		Buffer.byteLength(text) });
	res.end(text);
}

function oauthError(res, status, error, description, extra) {
	record('error', Object.assign({ error: error,
		error_description: description, status: status }, extra || {}));
	sendJson(res, status, { error: error, error_description: description });
}

// RFC 6749 2.3.1: HTTP Basic (form-urlencoded id and secret) or the body.
function clientAuth(req, form) {
	const h = req.headers.authorization || '';
	const m = /^Basic\s+(\S+)$/i.exec(h);
	if (m) {
		const dec = Buffer.from(m[1], 'base64').toString('utf8');
		const i = dec.indexOf(':');
		if (i < 0)
			return { error: 'malformed Basic credentials' };
		return { id: decodeURIComponent(dec.slice(0, i).replace(/\+/g, ' ')),
			secret: decodeURIComponent(dec.slice(i + 1).replace(/\+/g, ' ')),
			method: 'client_secret_basic' };
	}
	if (form.client_secret !== undefined)
		return { id: form.client_id, secret: form.client_secret,
			method: 'client_secret_post' };
	return { id: form.client_id, secret: undefined, method: 'none' };
}

function isLoopbackRedirect(uri) {
	try {
		const u = new URL(uri);
		return u.protocol === 'http:' && (u.hostname === '127.0.0.1' ||
			u.hostname === '[::1]' || u.hostname === 'localhost');
	} catch (e) {
		return false;
	}
}

function sha256b64url(s) {
	return crypto.createHash('sha256').update(s).digest('base64url');
}

function shortId(secret) {
	return sha256b64url(secret).slice(0, 10);
}

// ---- the mock server and its hooks ----------------------------------------
const server = new OAuth2Server();
const service = server.service;
const issuer = server.issuer;

service.on(Events.BeforeAuthorizeRedirect, (redirect, req) => {
	const ctx = req.interop;
	if (!ctx || !ctx.authorize)
		return;
	const code = redirect.url.searchParams.get('code');
	if (!code)
		return;
	codes.set(code, Object.assign({ used: false, at: Date.now() },
		ctx.authorize));
	secrets.codes.push(code);
	record('authorize', { user: ctx.authorize.user,
		client_id: ctx.authorize.client_id,
		redirect_uri: ctx.authorize.redirect_uri,
		scope: ctx.authorize.scope, code_challenge_method: 'S256',
		state_given: true, login_hint: ctx.authorize.login_hint || null });
});

service.on(Events.BeforeTokenSigning, (token, req) => {
	const ctx = req.interop;
	if (!ctx)
		return;
	const p = token.payload;
	const n = ctx.signed++;
	const now = Math.floor(Date.now() / 1000);
	if (n === 0) {		// the access token
		p.aud = conf.audience;
		p.client_id = ctx.client_id;
		p.scope = ctx.scope;
		if (ctx.user) {
			p.sub = ctx.user;
			p.email = ctx.user;
		} else {	// client credentials: the app itself
			p.sub = ctx.client_id;
			p.app_mailboxes = 'any@' + conf.mail_domain;
			p.roles = 'full_access_as_app';
		}
		p.iat = now;
		p.nbf = now - 10;
		p.exp = now + ctx.settings.jwt_lifetime;
		if (ctx.serverExpired) {
			// valid in every way but already expired for the server,
			// while expires_in tells the client it is good for long
			p.iat = now - 300;
			p.nbf = now - 310;
			p.exp = now - 60;
		}
	} else if (ctx.user) {	// the ID token
		p.sub = ctx.user;
		p.email = ctx.user;
	}
});

service.on(Events.BeforeResponse, (resp, req) => {
	const ctx = req.interop;
	if (!ctx || resp.statusCode !== 200)
		return;
	const body = resp.body;
	secrets.access_tokens.push(body.access_token);
	if (body.id_token)
		secrets.id_tokens.push(body.id_token);
	body.expires_in = ctx.settings.access_expires_in;
	body.scope = ctx.scope;
	let issued = null;
	if (!ctx.user) {
		delete body.refresh_token;
		delete body.id_token;
	} else if (ctx.grant === 'refresh_token' && !ctx.settings.rotate) {
		delete body.refresh_token;
	} else {
		const rt = randomToken(32);
		const gen = ctx.presented ? ctx.presented.gen + 1 : 1;
		const chain = ctx.presented ? ctx.presented.chain : shortId(rt);
		refresh.set(rt, { user: ctx.user, client_id: ctx.client_id,
			scope: ctx.scope, gen: gen, chain: chain, state: 'active',
			id: shortId(rt) });
		secrets.refresh_tokens.push(rt);
		body.refresh_token = rt;
		issued = { gen: gen, chain: chain, id: shortId(rt) };
	}
	record('token', { grant: ctx.grant, user: ctx.user || null,
		client_id: ctx.client_id, auth_method: ctx.authMethod,
		scope: ctx.scope, expires_in: body.expires_in,
		server_expired: !!ctx.serverExpired,
		presented: ctx.presented ? { gen: ctx.presented.gen,
			chain: ctx.presented.chain, id: ctx.presented.id } : null,
		issued: issued, access_id: shortId(body.access_token) });
});

function takeFailure(grant) {
	for (let i = 0; i < failures.length; i++) {
		const f = failures[i];
		if (f.grant === grant || f.grant === '*') {
			if (--f.count <= 0)
				failures.splice(i, 1);
			return f;
		}
	}
	return null;
}

// Checks the token request as a real server would, then lets the mock
// server issue the tokens (a device_code grant is issued as if it were an
// authorization code: the hooks above give every token its real claims).
function tokenRequest(req, res, next, text) {
	const form = parseForm(text);
	if (form === null)
		return oauthError(res, 400, 'invalid_request',
			'a parameter was given twice');
	const grant = form.grant_type;
	const auth = clientAuth(req, form);
	if (auth.error)
		return oauthError(res, 401, 'invalid_client', auth.error);
	const client = conf.clients[auth.id];
	if (!client)
		return oauthError(res, 401, 'invalid_client',
			"AADSTS700016: Application with identifier '" + auth.id +
			"' was not found in the directory 'interop.test'.",
			{ grant: grant });
	if (client.secret !== undefined && auth.secret !== client.secret)
		return oauthError(res, 401, 'invalid_client',
			'AADSTS7000215: Invalid client secret provided.',
			{ grant: grant, client_id: auth.id });
	const fail = takeFailure(grant);
	if (fail) {
		record('error', { grant: grant, client_id: auth.id,
			status: fail.status, error: fail.body.error,
			error_description: fail.body.error_description,
			queued: true });
		return sendJson(res, fail.status, fail.body);
	}
	const ctx = { grant: grant, client_id: auth.id, authMethod: auth.method,
		signed: 0, user: null, scope: form.scope || '', presented: null };
	if (grant === DEVICE_GRANT) {
		const d = devices.get(form.device_code);
		if (form.device_code)
			secrets.device_codes.push(form.device_code);
		if (!d || d.client_id !== auth.id)
			return oauthError(res, 400, 'invalid_grant',
				'AADSTS70000: unknown device_code', { grant: grant });
		const now = Date.now();
		const since = d.lastPoll ? (now - d.lastPoll) / 1000 : null;
		d.lastPoll = now;
		d.polls++;
		if (d.consumed)
			return oauthError(res, 400, 'invalid_grant',
				'AADSTS70000: the device_code was already redeemed',
				{ grant: grant, user_code: d.user_code });
		if (now > d.expires)
			return oauthError(res, 400, 'expired_token',
				'AADSTS70020: The provided value for the input parameter ' +
				"'device_code' is not valid. This device code has expired.",
				{ grant: grant, user_code: d.user_code });
		if (d.denied)
			return oauthError(res, 400, 'access_denied',
				'AADSTS70000: The user denied the authorization request.',
				{ grant: grant, user_code: d.user_code });
		if (!d.user) {
			if (since !== null && since < d.interval / 2) {
				d.interval += 5;
				return oauthError(res, 400, 'slow_down',
					'polled after ' + since.toFixed(2) + ' s',
					{ grant: grant, user_code: d.user_code });
			}
			record('device_poll', { user_code: d.user_code,
				client_id: auth.id });
			return sendJson(res, 400, { error: 'authorization_pending',
				error_description: 'AADSTS70016: OAuth 2.0 device flow ' +
				'error. Authorization is pending. Continue polling.' });
		}
		d.consumed = true;
		ctx.grant = 'device_code';
		ctx.user = d.user;
		ctx.scope = d.scope;
		req.body = { grant_type: 'authorization_code',
			code: 'device:' + d.user_code, client_id: auth.id };
	} else if (grant === 'authorization_code') {
		const c = codes.get(form.code);
		if (form.code_verifier)
			secrets.code_verifiers.push(form.code_verifier);
		if (!c)
			return oauthError(res, 400, 'invalid_grant',
				'AADSTS70008: The provided authorization code or refresh ' +
				'token has expired due to inactivity.', { grant: grant });
		if (c.used)
			return oauthError(res, 400, 'invalid_grant',
				'AADSTS54005: OAuth2 Authorization code was already ' +
				'redeemed, please retry with a new valid code or use an ' +
				'existing refresh token.', { grant: grant });
		c.used = true;
		if (c.client_id !== auth.id)
			return oauthError(res, 400, 'invalid_grant',
				'the code was issued to another client', { grant: grant });
		if (form.redirect_uri !== c.redirect_uri)
			return oauthError(res, 400, 'invalid_grant',
				'redirect_uri differs from the authorization request',
				{ grant: grant });
		if (!form.code_verifier)
			return oauthError(res, 400, 'invalid_request',
				'AADSTS50148: code_verifier missing (PKCE)', { grant: grant });
		if (sha256b64url(form.code_verifier) !== c.code_challenge)
			return oauthError(res, 400, 'invalid_grant',
				'AADSTS501481: The Code_Verifier does not match the ' +
				'code_challenge supplied in the authorization request.',
				{ grant: grant });
		ctx.user = c.user;
		ctx.scope = c.scope;
		req.body = form;	// the mock server checks the verifier
	} else if (grant === 'refresh_token') {
		const rt = refresh.get(form.refresh_token);
		if (!rt)
			return oauthError(res, 400, 'invalid_grant',
				'AADSTS9002313: Invalid request. Request is malformed or ' +
				'invalid.', { grant: grant });
		const seen = { gen: rt.gen, chain: rt.chain, id: rt.id };
		if (rt.client_id !== auth.id)
			return oauthError(res, 400, 'invalid_grant',
				'the refresh token was issued to another client',
				{ grant: grant, presented: seen });
		if (rt.state === 'revoked')
			return oauthError(res, 400, 'invalid_grant',
				'AADSTS70043: The refresh token has expired or is invalid ' +
				'due to sign-in frequency checks by conditional access.',
				{ grant: grant, user: rt.user, presented: seen });
		if (rt.state === 'rotated')
			return oauthError(res, 400, 'invalid_grant',
				'AADSTS70000: The provided grant has already been used ' +
				'(the refresh token was rotated).',
				{ grant: grant, user: rt.user, presented: seen });
		ctx.user = rt.user;
		ctx.scope = rt.scope;
		ctx.presented = rt;
		req.body = form;
	} else if (grant === 'client_credentials') {
		if (client.flows.indexOf('client_credentials') < 0)
			return oauthError(res, 400, 'unauthorized_client',
				'AADSTS700025: Client is public so neither ' +
				"'client_assertion' nor 'client_secret' should be " +
				'presented.', { grant: grant });
		if (client.secret === undefined || auth.secret === undefined)
			return oauthError(res, 401, 'invalid_client',
				'AADSTS7000218: The request body must contain the ' +
				"following parameter: 'client_assertion' or " +
				"'client_secret'.", { grant: grant });
		req.body = form;
	} else {
		return oauthError(res, 400, 'unsupported_grant_type',
			'grant_type ' + grant + ' is not supported', { grant: grant });
	}
	const key = ctx.user || 'app:' + auth.id;
	ctx.settings = userSettings(key);
	if (ctx.settings.server_expired > 0) {
		ctx.serverExpired = true;
		const s = settings.get(key);
		s.server_expired--;
	}
	if (grant === 'refresh_token' && ctx.settings.rotate)
		ctx.presented.state = 'rotated';
	req.interop = ctx;
	// body-parser leaves a body that is already parsed as it is
	req._body = true;
	next();
}

function authorizeRequest(req, res, next) {
	const u = new URL(req.url, 'https://idp');
	const q = Object.fromEntries(u.searchParams);
	const client = conf.clients[q.client_id];
	const refuse = (why) => {
		record('authorize_refused', { reason: why, client_id: q.client_id });
		sendJson(res, 400, { error: 'invalid_request',
			error_description: why });
	};
	if (!client || client.flows.indexOf('browser') < 0)
		return refuse('unknown client or not a browser-flow client');
	if (q.response_type !== 'code')
		return refuse('response_type must be code');
	if (!q.redirect_uri || !isLoopbackRedirect(q.redirect_uri))
		return refuse('redirect_uri must be a loopback http URI (RFC 8252)');
	if (!q.code_challenge || q.code_challenge_method !== 'S256')
		return refuse('PKCE with S256 is required');
	if (!q.state)
		return refuse('state is required');
	if (!q.scope)
		return refuse('scope is required');
	const user = req.headers['x-interop-user'] || q.login_hint;
	if (!user)
		return refuse('nobody signed in: no X-Interop-User header and no ' +
			'login_hint');
	req.interop = { authorize: { user: user, client_id: q.client_id,
		redirect_uri: q.redirect_uri, scope: q.scope,
		code_challenge: q.code_challenge, login_hint: q.login_hint } };
	next();
}

function deviceRequest(req, res, text) {
	const form = parseForm(text);
	if (form === null)
		return oauthError(res, 400, 'invalid_request',
			'a parameter was given twice');
	const client = conf.clients[form.client_id];
	if (!client || client.flows.indexOf('device') < 0)
		return oauthError(res, 400, 'unauthorized_client',
			'AADSTS700016: not a device-flow client: ' + form.client_id);
	if (!form.scope)
		return oauthError(res, 400, 'invalid_scope', 'scope is required');
	const dc = randomToken(32);
	let uc = userCode();
	while (userCodes.has(uc))
		uc = userCode();
	const base = 'https://' + conf.host + ':' + conf.port;
	devices.set(dc, { user_code: uc, client_id: form.client_id,
		scope: form.scope, user: null, denied: false, consumed: false,
		expires: Date.now() + DEVICE_EXPIRES * 1000, polls: 0,
		lastPoll: null, interval: DEVICE_INTERVAL });
	userCodes.set(uc, dc);
	secrets.device_codes.push(dc);
	record('device_authorization', { user_code: uc,
		client_id: form.client_id, scope: form.scope,
		verification_uri: base + '/device/verify' });
	sendJson(res, 200, { device_code: dc, user_code: uc,
		verification_uri: base + '/device/verify',
		expires_in: DEVICE_EXPIRES, interval: DEVICE_INTERVAL,
		message: 'To sign in, use a web browser to open the page ' + base +
		'/device/verify and enter the code ' + uc + ' to authenticate.' });
}

function idpHandler(req, res) {
	const p = new URL(req.url, 'https://idp').pathname;
	const delegate = () => service.requestHandler(req, res);
	if (req.method === 'POST' && p === '/token') {
		return readBody(req, (err, text) => {
			if (err)
				return oauthError(res, 400, 'invalid_request', err.message);
			try {
				tokenRequest(req, res, delegate, text);
			} catch (e) {
				oauthError(res, 500, 'server_error', String(e));
			}
		});
	}
	if (req.method === 'POST' && p === '/device') {
		return readBody(req, (err, text) => {
			if (err)
				return oauthError(res, 400, 'invalid_request', err.message);
			deviceRequest(req, res, text);
		});
	}
	if (req.method === 'GET' && p === '/device/verify') {
		res.writeHead(200, { 'Content-Type': 'text/plain' });
		return res.end('Enter the code mailtlsd showed you.\n');
	}
	if (req.method === 'GET' && p === '/authorize')
		return authorizeRequest(req, res, delegate);
	return delegate();
}

// ---- control API (for the test only) ---------------------------------------
function matches(ev, q) {
	for (const k of ['type', 'user', 'grant', 'client_id', 'user_code'])
		if (q[k] !== undefined && String(ev[k]) !== q[k])
			return false;
	return true;
}

function controlHandler(req, res) {
	const u = new URL(req.url, 'http://control');
	const q = Object.fromEntries(u.searchParams);
	if (req.method === 'GET' && u.pathname === '/events') {
		const since = parseInt(q.since || '0', 10);
		const timeout = Math.min(parseFloat(q.timeout || '0'), 60) * 1000;
		const pick = () => events.filter((e) => e.seq > since &&
			matches(e, q));
		const first = pick();
		if (first.length || timeout <= 0)
			return sendJson(res, 200, { events: first, last: events.length });
		const w = {
			offer: () => {
				const got = pick();
				if (!got.length)
					return false;
				clearTimeout(w.timer);
				sendJson(res, 200, { events: got, last: events.length });
				return true;
			},
		};
		w.timer = setTimeout(() => {
			waiters = waiters.filter((x) => x !== w);
			sendJson(res, 200, { events: [], last: events.length });
		}, timeout);
		waiters.push(w);
		return;
	}
	if (req.method === 'GET' && u.pathname === '/secrets') {
		const out = {};
		for (const k of Object.keys(secrets))
			out[k] = Array.from(new Set(secrets[k]));
		return sendJson(res, 200, out);
	}
	if (req.method === 'GET' && u.pathname === '/refresh-tokens') {
		const out = [];
		for (const r of refresh.values())
			if (!q.user || r.user === q.user)
				out.push({ user: r.user, gen: r.gen, chain: r.chain,
					state: r.state, id: r.id });
		return sendJson(res, 200, out);
	}
	if (req.method !== 'POST')
		return sendJson(res, 404, { error: 'no such control' });
	readBody(req, (err, text) => {
		let body;
		try {
			if (err)
				throw err;
			body = text ? JSON.parse(text) : {};
		} catch (e) {
			return sendJson(res, 400, { error: String(e) });
		}
		if (u.pathname === '/approve' || u.pathname === '/deny') {
			const dc = userCodes.get(body.user_code);
			const d = dc && devices.get(dc);
			if (!d)
				return sendJson(res, 404, { error: 'unknown user_code' });
			if (u.pathname === '/approve')
				d.user = body.user;
			else
				d.denied = true;
			record(u.pathname.slice(1), { user_code: body.user_code,
				user: body.user || null });
			return sendJson(res, 200, { ok: true });
		}
		if (u.pathname === '/settings') {
			const key = body.user;
			const s = Object.assign(settings.get(key) || {}, body);
			delete s.user;
			settings.set(key, s);
			return sendJson(res, 200, { ok: true, settings:
				userSettings(key) });
		}
		if (u.pathname === '/revoke') {
			let n = 0;
			for (const r of refresh.values())
				if (r.user === body.user && r.state === 'active') {
					r.state = 'revoked';
					n++;
				}
			record('revoke', { user: body.user, revoked: n });
			return sendJson(res, 200, { revoked: n });
		}
		if (u.pathname === '/fail') {
			failures.push({ grant: body.grant || '*',
				status: body.status || 400, count: body.count || 1,
				body: { error: body.error,
					error_description: body.error_description } });
			return sendJson(res, 200, { ok: true });
		}
		return sendJson(res, 404, { error: 'no such control' });
	});
}

// ---- start ----------------------------------------------------------------
async function main() {
	const jwk = await issuer.keys.generate('RS256', { kid: conf.kid });
	const pub = crypto.createPublicKey({ key: jwk, format: 'jwk' })
		.export({ type: 'spki', format: 'pem' });
	const keyDir = path.join(conf.key_dict_dir, 'default', 'RS256');
	fs.mkdirSync(keyDir, { recursive: true, mode: 0o755 });
	fs.writeFileSync(path.join(keyDir, conf.kid), pub, { mode: 0o644 });
	issuer.url = 'https://' + conf.host + ':' + conf.port;

	const idp = https.createServer({ key: fs.readFileSync(conf.tls_key),
		cert: fs.readFileSync(conf.tls_cert) }, idpHandler);
	const control = http.createServer(controlHandler);
	await new Promise((ok, bad) => idp.listen(conf.port, conf.host, ok)
		.on('error', bad));
	await new Promise((ok, bad) => control.listen(conf.control_port,
		conf.host, ok).on('error', bad));
	fs.writeFileSync(conf.pidfile, process.pid + '\n');
	const stop = () => {
		idp.close();
		control.close();
		process.exit(0);
	};
	process.on('SIGTERM', stop);
	process.on('SIGINT', stop);
	console.log('oauth2-idp: ready on ' + issuer.url + ', control on ' +
		conf.host + ':' + conf.control_port);
}

main().catch((e) => {
	console.error('oauth2-idp: ' + (e && e.stack || e));
	process.exit(1);
});
