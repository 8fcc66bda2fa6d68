/** What an operation runs and what undoes it, as the node details panel shows them. */

/** A task as `/tasks/{id}` answers it: the fields the details panel reads. */
export interface TaskCommand {
  type: string | null;
  provider: string | null;
  command: string | null;
  args: string[];
  undo?: string[] | null; // a `command` operation's undo argv (absent from an older orchestrator)
}

const PLAIN = /^[\w@%+=:,./-]+$/;

/** An argv as one line a shell would read back into the same words. */
export function argvText(argv: readonly string[]): string {
  return argv.map((word) => (PLAIN.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`)).join(" ");
}

/** The command line of a task: its command and arguments. */
export function commandText(task: TaskCommand): string {
  return argvText([...(task.command ? [task.command] : []), ...task.args]);
}

/**
 * How a task is undone: its undo command line (a `command` operation that has one), or
 * a note saying what a rollback does instead.
 */
export function undoOf(task: TaskCommand): { argv: string } | { note: string } {
  if (task.undo && task.undo.length) return { argv: argvText(task.undo) };
  if (task.type === "command") return { note: "no undo command: a rollback leaves it as it is" };
  return { note: `the provider's rollback of ${task.type || "this operation"} (${task.provider ?? "unknown"})` };
}
