import { describe, it, expect, beforeEach } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import {
  SNSClient,
  PublishCommand,
  SNSServiceException,
  ThrottledException,
  NotFoundException,
  AuthorizationErrorException,
  KMSAccessDeniedException,
  KMSDisabledException,
  InvalidParameterException,
} from '@aws-sdk/client-sns';
import { SnsAlertSink, snsSubject, formatAlertMessage } from '../../functions/adapters/alerts/sns.ts';
import type { Alert } from '../../functions/core/ports.ts';
import { ConfigError, PermanentError, RetryableError, ThrottledError } from '../../functions/core/errors.ts';

const TOPIC = 'arn:aws:sns:us-east-1:111122223333:memvault-alerts';
const meta = { $metadata: { httpStatusCode: 400 } };

const alert: Alert = {
  severity: 'error',
  subject: 'backup failed: memory-db',
  message: 'pg_dump exited with code 1',
  component: 'memory-db',
  step: 'export',
  cause: 'connection refused',
  details: { runId: 'r-42', attempt: 3 },
  time: '2025-01-02T03:04:05.000Z',
};

describe('SnsAlertSink', () => {
  const sns = mockClient(SNSClient);

  beforeEach(() => {
    sns.reset();
    sns.on(PublishCommand).resolves({ MessageId: 'm-1' });
  });

  const sink = () => new SnsAlertSink({ topicArn: TOPIC, client: new SNSClient({ region: 'us-east-1' }) });

  it('publishes subject, a readable message and the String attributes', async () => {
    await sink().send(alert);
    const calls = sns.commandCalls(PublishCommand);
    expect(calls).toHaveLength(1);
    const input = calls[0].args[0].input;
    expect(input.TopicArn).toBe(TOPIC);
    expect(input.Subject).toBe('backup failed: memory-db');
    expect(input.MessageAttributes).toEqual({
      severity: { DataType: 'String', StringValue: 'error' },
      component: { DataType: 'String', StringValue: 'memory-db' },
      step: { DataType: 'String', StringValue: 'export' },
    });
    expect(input.Message).toBe(
      [
        'backup failed: memory-db',
        '',
        'pg_dump exited with code 1',
        '',
        'Severity:  error',
        'Component: memory-db',
        'Step:      export',
        'Cause:     connection refused',
        'Time:      2025-01-02T03:04:05.000Z',
        'Details:',
        '  {',
        '    "runId": "r-42",',
        '    "attempt": 3',
        '  }',
      ].join('\n'),
    );
    expect(input.MessageGroupId).toBeUndefined();
  });

  it('omits empty and missing attributes (SNS rejects empty values) and empty fields', async () => {
    await sink().send({ severity: 'warning', subject: 'retention skipped', message: '', component: '', time: alert.time });
    const input = sns.commandCalls(PublishCommand)[0].args[0].input;
    expect(input.MessageAttributes).toEqual({ severity: { DataType: 'String', StringValue: 'warning' } });
    expect(input.Message).toBe('retention skipped\n\nSeverity:  warning\nTime:      2025-01-02T03:04:05.000Z');
  });

  it('truncates a long subject to 100 characters with an ellipsis, one ASCII line', async () => {
    const long = `backup failed: ${'vector-store-'.repeat(20)}`;
    await sink().send({ ...alert, subject: long });
    const input = sns.commandCalls(PublishCommand)[0].args[0].input;
    expect(input.Subject).toHaveLength(100);
    expect(input.Subject!.endsWith('...')).toBe(true);
    expect(input.Subject!.startsWith('backup failed: vector-store-vector-store-')).toBe(true);
    // the full subject is still in the message
    expect(input.Message!.split('\n')[0]).toBe(long);
  });

  it('makes subjects SNS-safe: no newlines, ASCII only, never empty', () => {
    expect(snsSubject('restore failed:\n  memory-db\r\n(step 2)')).toBe('restore failed: memory-db (step 2)');
    expect(snsSubject('sauvegarde échouée — café ✓')).toBe('sauvegarde echouee ? cafe ?');
    expect(snsSubject('   \n ')).toBe('memvault alert');
    expect(snsSubject('x'.repeat(100))).toBe('x'.repeat(100));
    expect(snsSubject('x'.repeat(101))).toBe(`${'x'.repeat(97)}...`);
    for (const s of [snsSubject('é'.repeat(300)), snsSubject('a\nb'.repeat(80))]) {
      expect(s.length).toBeLessThanOrEqual(100);
      expect(s).toMatch(/^[\x20-\x7e]+$/);
    }
  });

  it('keeps the message under the SNS size limit', () => {
    const text = formatAlertMessage({ ...alert, details: { log: 'x'.repeat(400 * 1024) } });
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(250 * 1024);
    expect(text.slice(-80)).toMatch(/\n\.\.\. \(truncated: the alert exceeded the SNS message size limit\)$/);
    expect(text.startsWith('backup failed: memory-db\n')).toBe(true);
  });

  it('adds a message group and deduplication id on FIFO topics', async () => {
    const fifo = new SnsAlertSink({ topicArn: `${TOPIC}.fifo`, client: new SNSClient({ region: 'us-east-1' }) });
    await fifo.send(alert);
    await fifo.send(alert);
    const [a, b] = sns.commandCalls(PublishCommand).map((c) => c.args[0].input);
    expect(a.MessageGroupId).toBe('memory-db');
    expect(a.MessageDeduplicationId).toMatch(/^[0-9a-f]{64}$/);
    expect(b.MessageDeduplicationId).toBe(a.MessageDeduplicationId);
  });

  it('rejects a malformed topic ARN at construction', () => {
    expect(() => new SnsAlertSink({ topicArn: 'memvault-alerts' })).toThrow(ConfigError);
  });

  describe('error mapping', () => {
    const generic = (name: string, message = name) => new SNSServiceException({ name, $fault: 'client', message, ...meta });
    const failWith = async (err: Error) => {
      sns.on(PublishCommand).rejects(err);
      return (await sink().send(alert).catch((x: unknown) => x)) as Error;
    };

    it.each([
      ['ThrottledException', new ThrottledException({ message: 'Rate exceeded', ...meta })],
      ['ThrottlingException', generic('ThrottlingException', 'Rate exceeded')],
      ['Throttled (query error code)', generic('Throttled', 'Rate exceeded')],
    ])('%s -> ThrottledError', async (_n, err) => {
      const e = await failWith(err);
      expect(e).toBeInstanceOf(ThrottledError);
      expect(e.name).toBe('ThrottledError');
      expect(e.message).toContain(TOPIC);
    });

    it('NotFound -> PermanentError naming the topic ARN', async () => {
      const e = await failWith(new NotFoundException({ message: 'Topic does not exist', ...meta }));
      expect(e).toBeInstanceOf(PermanentError);
      expect(e).not.toBeInstanceOf(RetryableError);
      expect(e.message).toBe(`SNS topic ${TOPIC} not found: check the alert topic ARN (region and account) and that the stack is deployed`);
    });

    it('AuthorizationError -> PermanentError asking for sns:Publish', async () => {
      const e = await failWith(new AuthorizationErrorException({ message: 'User is not authorized', ...meta }));
      expect(e).toBeInstanceOf(PermanentError);
      expect(e.message).toMatch(/not authorized to publish to SNS topic arn:aws:sns:us-east-1:111122223333:memvault-alerts .*grant sns:Publish/);
    });

    it.each([
      ['KMSAccessDenied', new KMSAccessDeniedException({ message: 'access denied to key', ...meta }), /KMSAccessDenied: access denied to key/],
      ['KMSDisabled', new KMSDisabledException({ message: 'key disabled', ...meta }), /disabled KMS key \(KMSDisabled: key disabled\)/],
    ])('%s -> PermanentError naming the cause', async (_n, err, pattern) => {
      const e = await failWith(err);
      expect(e).toBeInstanceOf(PermanentError);
      expect(e).not.toBeInstanceOf(RetryableError);
      expect(e.message).toContain(TOPIC);
      expect(e.message).toMatch(pattern);
    });

    it('InvalidParameter -> PermanentError; a server fault -> RetryableError', async () => {
      const e1 = await failWith(new InvalidParameterException({ message: 'Invalid parameter: Subject', ...meta }));
      expect(e1).toBeInstanceOf(PermanentError);
      expect(e1.message).toContain('Invalid parameter: Subject');
      const e2 = await failWith(new SNSServiceException({ name: 'ServiceUnavailable', $fault: 'server', message: 'down', $metadata: { httpStatusCode: 503 } }));
      expect(e2).toBeInstanceOf(RetryableError);
    });
  });
});
