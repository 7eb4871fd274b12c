// The producer/consumer and ticket examples on Redis: the same programs with the queue and the
// lock of getContext('redis'), run as a program that must end by itself.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Redis } from 'ioredis';

import { fixture, killLeftoverChildren, runNode, tmpDir } from './helpers.js';
import { randomNamespace, RedisServer, redisMissing } from './redis_server.js';

let server: RedisServer;

describe('the examples on Redis', { skip: redisMissing }, () => {
  before(async () => {
    server = await RedisServer.start();
  });
  after(async () => {
    await killLeftoverChildren();
    await server.stop();
  });

  test('producer/consumer: every dish eaten once; tickets: exactly 2 bought; the program ends by itself', async () => {
    const db = path.join(tmpDir(), 'db.json');
    const r = await runNode([fixture('redis_seeds.mjs'), server.url, randomNamespace(), db], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    const eaten = lines.filter((l) => l.startsWith('吃货')).map((l) => l.replace(/^吃货.{2}吃了/, ''));
    const foods = ['包子', '辣椒炒肉', '土豆丝'].flatMap((f) => Array.from({ length: 10 }, (_, i) => `${f}${i}`));
    assert.deepEqual(eaten.sort(), foods.sort());
    assert.equal(lines.filter((l) => l.endsWith('购票成功')).length, 2);
    assert.equal(lines.at(-1), '最后余票为0');
  });

  test('Manager dict shared by processes: 10 children each set dic[i] = 100; the program ends by itself and leaves no key', async () => {
    const ns = randomNamespace();
    const r = await runNode([fixture('redis_manager_dict.mjs'), server.url, ns], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim()), Object.fromEntries(Array.from({ length: 10 }, (_, i) => [String(i), 100])));
    const redis = new Redis(server.url);
    try {
      assert.deepEqual(await redis.keys(`mp:{${ns}}:dict:*`), [], 'the manager deleted its dict at the end of its block');
    } finally {
      redis.disconnect();
    }
  });
});
