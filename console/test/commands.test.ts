import { describe, expect, it } from "vitest";
import { argvText, commandText, undoOf } from "../src/lib/commands";

describe("argvText", () => {
  it("keeps plain words and quotes the others so the words read back the same", () => {
    expect(argvText(["rm", "-f", "/tmp/a.txt"])).toBe("rm -f /tmp/a.txt");
    expect(argvText(["python3", "-c", "print('x y')"])).toBe(`python3 -c 'print('\\''x y'\\'')'`);
    expect(argvText(["echo", ""])).toBe("echo ''");
  });
});

describe("commandText", () => {
  it("joins the command and its arguments", () => {
    const task = { type: "command", provider: "command", command: "touch", args: ["made file"] };
    expect(commandText(task)).toBe("touch 'made file'");
    expect(commandText({ ...task, command: null, args: [] })).toBe("");
  });
});

describe("undoOf", () => {
  const command = { type: "command", provider: "command", command: "touch", args: ["x"] };

  it("shows a command operation's undo argv", () => {
    expect(undoOf({ ...command, undo: ["rm", "-f", "x"] })).toEqual({ argv: "rm -f x" });
  });

  it("says a command with no undo is left as it is", () => {
    expect(undoOf({ ...command, undo: null })).toEqual({ note: "no undo command: a rollback leaves it as it is" });
    expect(undoOf(command)).toEqual({ note: "no undo command: a rollback leaves it as it is" });
  });

  it("names the provider's own rollback for other operations", () => {
    const server = { type: "server_batch", provider: "aws", command: "provisioning servers create", args: [], undo: null };
    expect(undoOf(server)).toEqual({ note: "the provider's rollback of server_batch (aws)" });
  });
});
