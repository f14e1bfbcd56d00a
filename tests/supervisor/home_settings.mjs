// An agent whose settings live in the home folder (Node): reads ~/.config/agent.json, updates it
// by renaming a new file over it, appends to a log there, and prints what it did.
import fs from "node:fs"; import os from "node:os"; import path from "node:path";
const file = path.join(os.homedir(), ".config", "agent.json");
const settings = JSON.parse(fs.readFileSync(file, "utf8"));
settings.runs += 1; settings.last = new Date().toISOString();
fs.writeFileSync(file + ".tmp", JSON.stringify(settings)); fs.renameSync(file + ".tmp", file);
const log = path.join(os.homedir(), ".agent.log");
fs.appendFileSync(log, `run ${settings.runs}\n`);
console.log("settings", JSON.stringify(settings), "log", fs.readFileSync(log, "utf8").trim().split("\n").length);
