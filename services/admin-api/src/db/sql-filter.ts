/**
 * WHERE conditions with numbered parameters for one query, so every list procedure builds its
 * filters the same way: `add((p) => \`c.type = ${p}\`, value)` binds one value, `raw('x IS NULL')`
 * adds a condition without one. Values are always bound, never spliced into the SQL.
 */
export class SqlFilter {
  readonly params: unknown[] = [];
  private readonly conditions: string[] = [];

  add(sql: (placeholder: string) => string, value: unknown): void {
    this.params.push(value);
    this.conditions.push(sql(`$${this.params.length}`));
  }

  raw(sql: string): void {
    this.conditions.push(sql);
  }

  /** `WHERE a AND b`, or '' without conditions. */
  get where(): string {
    return this.conditions.length ? `WHERE ${this.conditions.join(' AND ')}` : '';
  }

  /** The placeholder `n` positions after the bound values (for LIMIT/OFFSET appended to `params`). */
  after(n: number): string {
    return `$${this.params.length + n}`;
  }
}
