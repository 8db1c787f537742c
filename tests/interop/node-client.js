// The Node.js clients of the interop suite: nodemailer (send) and imapflow
// (read), installed by setup.sh with npm into build/interop-node (found
// through NODE_PATH). One JSON argument:
//   {"op": "send" | "read", "port": N, "mode": "plain" | "local-starttls" |
//    "local-implicit", "ca": "local.crt" (local modes), "user", "pass",
//    "from", "to", "message": FILE (send), "outdir": DIR (read),
//    "transcript": FILE}
// The transcript gets one line per protocol line, "< " from the server and
// "> " from the client, from the libraries' own debug logging.
"use strict";
const fs = require("fs");
const path = require("path");

const a = JSON.parse(process.argv[2]);
const lines = [];
const record = (dir, text) => {
    for (const ln of String(text).split(/\r?\n/)) lines.push(dir + " " + ln);
};
const save = () => fs.writeFileSync(a.transcript, lines.join("\n") + "\n");

// What the settings of a user's configuration would be, by mode.
function tlsOptions() {
    if (a.mode === "plain" || !a.ca) return {};
    return { tls: { ca: fs.readFileSync(a.ca) } };
}

function logger(onEntry) {
    const log = { level: "debug" };
    for (const l of ["trace", "debug", "info", "warn", "error", "fatal"])
        log[l] = (...args) => onEntry(args);
    log.child = () => log;
    return log;
}

async function send() {
    const nodemailer = require("nodemailer");
    const opts = Object.assign({
        host: "127.0.0.1", port: a.port,
        auth: { user: a.user, pass: a.pass },
        debug: true,
        logger: logger(([meta, msg]) => {
            if (meta && meta.tnx === "server") record("<", msg);
            else if (meta && meta.tnx === "client") record(">", msg);
        }),
    }, tlsOptions());
    if (a.mode === "plain") { opts.secure = false; opts.ignoreTLS = true; }
    if (a.mode === "local-starttls") { opts.secure = false; opts.requireTLS = true; }
    if (a.mode === "local-implicit") opts.secure = true;
    const info = await nodemailer.createTransport(opts).sendMail({
        envelope: { from: a.from, to: [a.to] },
        raw: fs.readFileSync(a.message),
    });
    console.log("sent: " + info.response);
}

async function read() {
    const { ImapFlow } = require("imapflow");
    const opts = Object.assign({
        host: "127.0.0.1", port: a.port,
        auth: { user: a.user, pass: a.pass },
        logger: logger(([meta]) => {
            if (meta && meta.src === "s") record("<", meta.msg);
            else if (meta && meta.src === "c") record(">", meta.msg);
        }),
    }, tlsOptions());
    if (a.mode === "plain") { opts.secure = false; opts.doSTARTTLS = false; }
    if (a.mode === "local-starttls") { opts.secure = false; opts.doSTARTTLS = true; }
    if (a.mode === "local-implicit") opts.secure = true;
    const client = new ImapFlow(opts);
    await client.connect();
    const lock = await client.getMailboxLock("INBOX", { readOnly: true });
    let n = 0;
    try {
        for await (const m of client.fetch("1:*", { uid: true, source: true }, { uid: false })) {
            fs.writeFileSync(path.join(a.outdir, "uid-" + String(m.uid).padStart(6, "0")), m.source);
            n++;
        }
    } finally {
        lock.release();
    }
    await client.logout();
    console.log("read: " + n + " messages");
}

(a.op === "send" ? send() : read()).then(save, (e) => {
    save();
    console.error("error: " + e.message + (e.code ? " (" + e.code + ")" : "") +
                  (e.responseText ? ": " + e.responseText : ""));
    process.exit(1);
});
