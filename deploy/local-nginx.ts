// deploy/nginx.conf run on this machine in front of local instances: for `npm run
// cluster` and the tests that stream through a real nginx. It runs as one process (no
// master and workers, no switch to another user), with every file it writes in `dir`.
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { delimiter, join } from 'node:path'

export const NGINX_CONF = new URL('./nginx.conf', import.meta.url)

/** nginx on the PATH, or in /usr/sbin (where Debian puts it, off a non-root PATH). */
export function findNginx (): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin']
  for (const dir of dirs) {
    if (dir === '') continue
    try {
      accessSync(join(dir, 'nginx'), constants.X_OK)
      return join(dir, 'nginx')
    } catch {}
  }
  return undefined
}

function replaceOnce (text: string, from: RegExp, to: string): string {
  if (!from.test(text)) throw new Error(`deploy/nginx.conf has no line matching ${from}: update deploy/local-nginx.ts with it`)
  return text.replace(from, to)
}

export interface LocalNginxOptions {
  /** host:port of each instance. */
  upstreams: string[]
  /** The loopback port nginx listens on. */
  port: number
  dir: string
  /** The error log to `dir`/error.log (default), or to stderr as the config says. */
  errorLogInDir?: boolean
}

/** deploy/nginx.conf with the instances as its upstream, on a loopback port. */
export function renderNginxConf (conf: string, opts: LocalNginxOptions): string {
  const { dir } = opts
  const servers = opts.upstreams.map(u => `server ${u};`).join(' ')
  conf = replaceOnce(conf, /set \$sse_upstream \S+;/, 'set $sse_upstream sse_local;')
  // The upstream is a fixed list: nothing to resolve (in a container, deploy/nginx-resolver.sh writes the file).
  conf = replaceOnce(conf, /^ *include resolver\.conf;$/m, '')
  conf = replaceOnce(conf, /listen \d+;/, `listen 127.0.0.1:${opts.port};`)
  if (opts.errorLogInDir ?? true) conf = replaceOnce(conf, /^error_log .*;$/m, `error_log ${dir}/error.log info;`)
  // Not /dev/stdout: a child's stdout from Node is a socket, which nginx cannot open.
  conf = replaceOnce(conf, /access_log \S+ main;/, `access_log ${dir}/access.log main;`)
  return replaceOnce(conf, /^http \{$/m, [
    'http {',
    `    upstream sse_local { ${servers} }`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(p => `    ${p}_temp_path ${dir}/${p};`)
  ].join('\n'))
}

/**
 * Starts nginx with `conf`; resolves once `url`/health answers 200 through it (or, with
 * `upstreamsUp` false, answers at all), 10 s at most.
 */
export async function startNginx (bin: string, dir: string, conf: string, url: string, upstreamsUp = true): Promise<ChildProcess> {
  await writeFile(join(dir, 'nginx.conf'), conf)
  const child = spawn(bin, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', conf.includes(`error_log ${dir}/`) ? `${dir}/error.log` : 'stderr',
    '-g', `daemon off; master_process off; pid ${dir}/nginx.pid;`], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const keep = (chunk: Buffer): void => { if (output.length < 100_000) output += chunk.toString() }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  const deadline = Date.now() + 10_000
  while (true) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
      throw new Error(`nginx exited (${child.exitCode ?? child.signalCode}): ${output}${log}`)
    }
    try {
      const res = await fetch(`${url}/health`)
      await res.body?.cancel()
      if (res.ok || !upstreamsUp) return child
    } catch {}
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`nginx did not answer ${url}/health within 10 s: ${output}`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}
