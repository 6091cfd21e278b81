import { router } from '../../trpc/init';
import { register } from './register';
import { get } from './get';
import { list } from './list';
import { update } from './update';
import { deleteCollector } from './delete';
import { restore } from './restore';
import { rotateToken } from './rotate-token';
import { disable } from './disable';
import { enable } from './enable';
import { sendCommand } from './send-command';
import { testConnection } from './test-connection';
import { bulkImport } from './bulk-import';
import { tokenKeys } from './token-keys';

export const collectorsRouter = router({
  register,
  get,
  list,
  update,
  delete: deleteCollector,
  restore,
  rotateToken,
  disable,
  enable,
  sendCommand,
  testConnection,
  bulkImport,
  tokenKeys,
});
