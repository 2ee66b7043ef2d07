import { describe, expect, it } from 'vitest';
import { retryTimeouts } from './bucket-keys.js';

function timeout(): Error {
  const err = new Error('timeout');
  err.name = 'TimeoutError';
  return err;
}

/** A read that times out like a request to a stream without a leader until `forMs` have passed. */
function leaderless(forMs: number): () => Promise<string> {
  const start = Date.now();
  return async () => {
    if (Date.now() - start < forMs) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      throw timeout();
    }
    return 'answered';
  };
}

describe('retryTimeouts', () => {
  // nats-server's Raft groups wait 4 to 9 s (minElectionTimeout, maxElectionTimeout) without a leader
  // before they elect another; a clean-clone run saw a read give up after four timeouts at 8.8 s
  // and the next one answer at 9.1 s.
  it('rides out the longest election of a new stream leader', async () => {
    await expect(retryTimeouts(leaderless(9_500))).resolves.toBe('answered');
  }, 30_000);

  it('does not ask again after an error that is not a timeout', async () => {
    let asked = 0;
    const read = async (): Promise<string> => {
      asked++;
      throw new Error('no such stream');
    };
    await expect(retryTimeouts(read)).rejects.toThrow('no such stream');
    expect(asked).toBe(1);
  });

  it('gives up with the last timeout once its time is spent', async () => {
    const started = Date.now();
    await expect(retryTimeouts(leaderless(Infinity), { budgetMs: 300 })).rejects.toThrow('timeout');
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
