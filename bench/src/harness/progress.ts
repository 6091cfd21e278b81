/**
 * One status line while the bench runs: rewritten in place on a terminal, printed every few
 * seconds otherwise (CI logs).
 */
export class Progress {
  private last = '';
  private lastPrinted = 0;
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly started = Date.now();

  update(text: string): void {
    const line = `[${((Date.now() - this.started) / 1000).toFixed(0).padStart(4)} s] ${text}`;
    if (this.tty) {
      const width = process.stderr.columns || 120;
      process.stderr.write(`\r${line.slice(0, width - 1).padEnd(Math.min(width - 1, this.last.length))}`);
      this.last = line;
    } else if (Date.now() - this.lastPrinted > 5000) {
      process.stderr.write(`${line}\n`);
      this.lastPrinted = Date.now();
    }
  }

  /** A permanent line (scenario finished, warning). */
  log(text: string): void {
    if (this.tty && this.last)
      process.stderr.write(`\r${' '.repeat(Math.min(this.last.length, (process.stderr.columns || 120) - 1))}\r`);
    this.last = '';
    process.stderr.write(`${text}\n`);
  }
}
