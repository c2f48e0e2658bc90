// Debian's Chromium driven by playwright-core, for tests of what a user sees on a page.
// No Chromium is a failure, not a skip: the page is tested in a real browser or not at all.
import { accessSync, constants } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import type { Test } from 'tap'

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run']

export interface Browser {
  context: BrowserContext
  /** Console errors and uncaught exceptions of every page, e.g. a Content-Security-Policy refusal. */
  errors: string[]
  newPage: () => Promise<Page>
}

/** Throws with what to install when there is no Chromium to run. */
export function checkChromium (): void {
  try {
    accessSync(CHROMIUM, constants.X_OK)
  } catch {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH). ` +
      'The demo page is tested in a real browser; .ci/run installs it.')
  }
}

/** A headless Chromium with a fresh profile of its own; closed (and the profile removed) when `t` ends. */
export async function launchChromium (t: Test): Promise<Browser> {
  checkChromium()
  const profile = await mkdtemp(join(tmpdir(), 'sse-chromium-'))
  // --headless comes from headless: true; the profile is a fresh --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS })
  t.teardown(async () => {
    await context.close()
    await rm(profile, { recursive: true, force: true })
  })
  const errors: string[] = []
  const watch = (page: Page): void => {
    page.on('console', m => { if (m.type() === 'error') errors.push(m.text()) })
    page.on('pageerror', err => errors.push(err.message))
  }
  context.on('page', watch)
  return {
    context,
    errors,
    newPage: async () => await context.newPage()
  }
}

/** The rows of the page's event table: id, event, time, data, as the user reads them. */
export async function eventRows (page: Page): Promise<Array<{ id: string, event: string, data: string }>> {
  return await page.$$eval('#events tr', rows => rows.map(row => {
    const cells = [...row.querySelectorAll('td')].map(td => td.textContent ?? '')
    return { id: cells[0], event: cells[1], data: cells[3] }
  }))
}
