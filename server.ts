// The entry point: build, listen, and shut down cleanly on SIGTERM / SIGINT.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'

let app
try {
  app = await buildApp()
  await app.ready()
} catch (err) {
  console.error(`sse-fanout: cannot start: ${(err as Error).message}`)
  process.exit(1)
}

closeWithGrace({ delay: app.config.SHUTDOWN_TIMEOUT_MS, logger: app.log }, async ({ signal, err }) => {
  if (err !== undefined) app.log.error({ err }, 'shutting down after an error')
  else app.log.info(`${signal} received: ending streams and shutting down`)
  await app.close()
})

await app.listen({ port: app.config.PORT, host: app.config.HOST })
