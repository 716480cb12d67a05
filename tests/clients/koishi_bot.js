// A minimal Koishi bot (koishi-plugin-adapter-onebot, protocol `ws-reverse`) for the bridge's
// integration tests (tests/koishi.rs). The bridge dials it, as go-cqhttp's `ws-reverse` would, at
//
//     ws://127.0.0.1:<port>/onebot
//
// on a port the OS chooses. Settings (environment):
//
//     SELF_ID=10001     the bot account Koishi accepts (X-Self-ID must equal it); default 10001
//     PROTOCOL=http     use Koishi's `http` protocol instead: it calls the bridge's HTTP API at
//                       ENDPOINT with `Authorization: Token $TOKEN`, and receives the bridge's
//                       HTTP POST at http://127.0.0.1:<port>/onebot, checking the signature
//                       under SECRET
//     KOISHI_DEBUG=1    Koishi's debug log (to stderr)
//
// Every message is answered with `session.send('echo: ' + content)`.
//
// Protocol with the test, on stdout (one line each):
//
//     LISTENING <port>      the reverse-WS server is bound to 127.0.0.1:<port>
//     HANDSHAKE <json>      the headers of a WebSocket upgrade Koishi received (lower-case names)
//     CONNECTED <self_id>   Koishi's bot went online (after its get_login_info call)
//     MESSAGE <json>        a message session: {content, userId, channelId}
//
// Everything else (Koishi's log, and a trace of every WebSocket frame: `frame <- ...` received,
// `frame -> ...` sent) goes to stderr. The script exits when its stdin reaches end of file, so it
// never outlives a test process that died.

'use strict'

const say = (line) => process.stdout.write(line + '\n')
const trace = (line) => process.stderr.write(line + '\n')
// Koishi's logger prints with console.log: keep stdout for the lines above.
console.log = (...args) => trace(args.join(' '))

const { WebSocket } = require('ws')
const send = WebSocket.prototype.send
WebSocket.prototype.send = function (data, ...rest) {
  trace(`frame -> ${data}`)
  return send.call(this, data, ...rest)
}
const emit = WebSocket.prototype.emit
WebSocket.prototype.emit = function (event, ...args) {
  if (event === 'message') trace(`frame <- ${args[0]}`)
  return emit.call(this, event, ...args)
}

const { Context, Logger, Universal } = require('koishi')
const http = require('@koishijs/plugin-http').default
const server = require('@koishijs/plugin-server').default
const onebot = require('koishi-plugin-adapter-onebot').default

if (process.env.KOISHI_DEBUG) Logger.levels.base = 3

process.stdin.on('data', () => {})
process.stdin.on('end', () => process.exit(0))

const selfId = process.env.SELF_ID || '10001'
const ctx = new Context()
// The http plugin must be loaded explicitly, or the OneBot bot is never created.
ctx.plugin(http)
// No port: the server plugin then does not listen, and this script listens on port 0 itself.
ctx.plugin(server, { host: '127.0.0.1' })
if (process.env.PROTOCOL === 'http') {
  ctx.plugin(onebot, {
    protocol: 'http',
    selfId,
    endpoint: process.env.ENDPOINT,
    token: process.env.TOKEN,
    secret: process.env.SECRET,
    path: '/onebot',
  })
} else {
  ctx.plugin(onebot, { protocol: 'ws-reverse', selfId, path: '/onebot', responseTimeout: 10000 })
}

ctx.on('login-updated', ({ bot }) => {
  if (bot.status === Universal.Status.ONLINE) say(`CONNECTED ${bot.selfId}`)
})
ctx.on('message', (session) => {
  say(`MESSAGE ${JSON.stringify({ content: session.content, userId: session.userId, channelId: session.channelId })}`)
  session.send('echo: ' + session.content)
})

ctx.inject(['server'], (ctx) => {
  // koishi-plugin-adapter-onebot 6.9.4 reads a POSTed event from `ctx.body` (Koa's *response*
  // body), while @koishijs/plugin-server 3.2.9 (cordis) parses it into `ctx.request.body`: with
  // these two releases the `http` protocol never sees an event. Hand the parsed body over, as
  // older server plugins did; the adapter's own signature check is unchanged.
  const parse = ctx.server._body
  ctx.server._body = (c, next) =>
    parse(c, async () => {
      if (c.body === undefined && c.request.body !== undefined) c.body = c.request.body
      await next()
    })
  const httpServer = ctx.server._http
  ctx.server._ws.on('connection', (_socket, request) => say(`HANDSHAKE ${JSON.stringify(request.headers)}`))
  httpServer.listen(0, '127.0.0.1', () => {
    ctx.server.host = '127.0.0.1'
    ctx.server.port = httpServer.address().port
    say(`LISTENING ${ctx.server.port}`)
  })
})

ctx.start().catch((error) => {
  trace(`koishi failed to start: ${error && error.stack}`)
  process.exit(1)
})
