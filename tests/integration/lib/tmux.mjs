// An interactive terminal for tests: a tmux server of our own (its own socket) running one shell
// command in a 100x30 window, driven with send-keys and read with capture-pane.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { waitFor } from './gateway.mjs';

export function startTmux(command, name = 'nh') {
  const sock = `${name}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const tmux = (...args) => execFileSync('tmux', ['-L', sock, '-f', '/dev/null', ...args], { encoding: 'utf8' });
  tmux('new-session', '-d', '-s', 'nh', '-x', '100', '-y', '30', command);
  return {
    tmux,
    capture: () => {
      try {
        return tmux('capture-pane', '-p', '-t', 'nh');
      } catch {
        return '';
      }
    },
    keys: (...k) => tmux('send-keys', '-t', 'nh', ...k),
    kill: () => {
      try {
        tmux('kill-server');
      } catch {
        /* already gone */
      }
    },
  };
}

/** Waits until the screen matches `re`; the error shows the screen. */
export async function waitScreen(t, re, what, ms = 5000) {
  try {
    await waitFor(() => re.test(t.capture()), ms, what);
  } catch (e) {
    throw new Error(`${e.message}\n--- screen:\n${t.capture()}\n---`);
  }
}

/** `nhctl <verb> <dev>` in a shell that then reports its exit status and whether the tty is sane. */
export const nhctlTerminalCommand = (nhctl, verb, dev, natsUrl) =>
  `${nhctl} ${verb} ${dev} --nats ${natsUrl}; echo "EXIT=$?"; stty -a | grep -o -- '-*icanon' | head -1 | sed 's/^/TTY=/'; sleep 60`;

/** nhctl run to completion, not interactive (stdin is not a terminal): {code, stdout, stderr}. */
export function runNhctl(nhctl, args, natsUrl, timeoutMs = 25000) {
  const r = spawnSync(nhctl, [...args, '--nats', natsUrl], { encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
