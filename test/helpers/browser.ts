// A real browser for the tests: Debian's Chromium (apt-get install chromium) driven by
// playwright-core, with a fresh profile, closed when the test ends.
import { chromium, type BrowserContext } from 'playwright-core'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'

export const CHROMIUM_PATH = '/usr/bin/chromium'

// No sandbox (CI runs as root), and nothing that reaches out to Google's servers.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run']

/** Launches Chromium with a profile of its own; it is closed, and the profile removed, when `t` ends. */
export async function launchBrowser (t: Test): Promise<BrowserContext> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: install it with apt-get install -y chromium (bash .ci/run does)`)
  }
  const profile = await mkdtemp(join(tmpdir(), 'sse-fanout-chromium-'))
  // launchPersistentContext is playwright's way to pass --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM_PATH, headless: true, args: FLAGS })
  t.teardown(async () => {
    await context.close()
    await rm(profile, { recursive: true, force: true })
  })
  return context
}
